"""Admin pages: the box's records, every stored card (Messages) and the BLE relay (Relay)."""

from __future__ import annotations

from urllib.parse import urlencode

from aiohttp import web

from ... import keys
from ...errors import Invalid
from ...mailbox import MSG_TYPES
from ...records import browse_messages, check_filter, relay_view
from ...services.catalog import zone_name
from . import i18n
from .guard import PageRefused, read_form, render, url


async def messages(request: web.Request) -> web.Response:
    app, query = request.config_dict, request.query
    try:
        filters = check_filter(sender=query.get("sender"), receiver=query.get("receiver"), msg_type=query.get("type"),
                               day_from=query.get("from"), day_to=query.get("to"))
        page = await browse_messages(app[keys.db], app[keys.zone], filters, before=query.get("before") or None)
    except Invalid as refused:  # a bad filter is the request's fault: 400, in the page's language
        raise PageRefused(400, i18n.gettext(refused.message)) from None
    next_url = None
    if page.next_before is not None:
        next_url = f"{url(request, 'admin.messages')}?{urlencode({**filters.query(), 'before': page.next_before})}"
    return render(request, "messages.html", page=page, filters=filters.form(), types=MSG_TYPES,
                  zone=zone_name(app[keys.zone]), next_url=next_url)


# The relay (SPEC §8) is not built: relay_view() says "off". Once it is, pass it the app's relay.

async def relay(request: web.Request) -> web.Response:
    return render(request, "relay.html", relay=relay_view(), refused=None)


async def relay_test(request: web.Request) -> web.Response:
    await read_form(request)
    view = relay_view()
    if not view["can_send"]:
        return render(request, "relay.html", status=409, relay=view,
                      refused=i18n.gettext("The relay is off: no test card was sent."))
    raise PageRefused(501, "the relay cannot send test cards yet")


ROUTES = [
    ("GET", "/messages", messages, "admin.messages"),
    ("GET", "/relay", relay, "admin.relay"),
    ("POST", "/relay/test", relay_test, "admin.relay_test"),
]

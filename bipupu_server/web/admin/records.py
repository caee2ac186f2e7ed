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
from .guard import PageRefused, actor, read_form, render, see_other, url


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


# The relay (SPEC §8): its state, the last frames, and a test card --------------------------------

async def relay(request: web.Request) -> web.Response:
    queued = request.query.get("test") == "queued"
    return render(request, "relay.html", relay=relay_view(request.config_dict.get(keys.relay)), refused=None,
                  queued=queued)


async def relay_test(request: web.Request) -> web.Response:
    """Queue a test card for the device: only while it is connected (a card for a device away would wait
    unseen, and the admin wants to know now whether it is in reach)."""
    await read_form(request)
    app_relay = request.config_dict.get(keys.relay)
    sent = app_relay.send_test() if app_relay is not None else None
    view = relay_view(app_relay)
    if sent is None:
        refused = (i18n.gettext("The relay is off: no test card was sent.") if app_relay is None else
                   i18n.gettext("The device is not connected (%(state)s): no test card was sent.")
                   % {"state": i18n.gettext(view["state"])})
        return render(request, "relay.html", status=409, relay=view, refused=refused, queued=False)
    await request.config_dict[keys.admin].record(actor(request), "relay.test", sent, device=view["device"])
    return see_other(f"{url(request, 'admin.relay')}?test=queued")


ROUTES = [
    ("GET", "/messages", messages, "admin.messages"),
    ("GET", "/relay", relay, "admin.relay"),
    ("POST", "/relay/test", relay_test, "admin.relay_test"),
]

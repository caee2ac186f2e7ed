"""The admin pages of service accounts: the list, one service's settings and subscribers, and broadcast now."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web
from multidict import MultiDictProxy

from ... import keys
from ...errors import AppError
from ...identity import BIPUPU_ID
from ...mailbox import EFFECTS, FONTS
from ...services.catalog import Services
from ...services.commands import ACTIONS, REPLY_PATTERN
from . import i18n
from .guard import PageRefused, actor, confirm, elevated, read_form, render, see_other, url

WORD_SEPARATORS = re.compile(r"[,，、\n]")  # command words are typed as a list: commas (either width) or lines
PATTERN_TEXT = ("led_color", "effect", "font", "sound", "screensaver")
# What the broadcast form starts with: the services' own reply pattern.
DRAFT = {"content": "", "led_color": REPLY_PATTERN["led_color"], "effect": REPLY_PATTERN["effect"],
         "font": REPLY_PATTERN["font"], "duration_s": str(REPLY_PATTERN["duration_s"]), "vibrate": "",
         "sound": "", "screensaver": ""}

NEW_SERVICE = {"id": "", "name": "", "description": "", "send_time": "08:00", "daily_content": ""}


def _catalog(request: web.Request) -> Services:
    return request.config_dict[keys.services]


def words(text: str) -> list[str]:
    """'TD, 订阅，SUB' → ['TD', '订阅', 'SUB']."""
    return [word.strip() for word in WORD_SEPARATORS.split(text) if word.strip()]


def pattern_of(form: MultiDictProxy[str]) -> dict[str, Any]:
    """The pattern editor's fields as a pattern object; empty fields are left out, the domain checks the rest."""
    pattern: dict[str, Any] = {}
    for name in PATTERN_TEXT:
        value = form.get(name, "").strip()
        if value:
            pattern[name] = value.upper() if name == "led_color" else value
    duration = form.get("duration_s", "").strip()
    if duration:
        pattern["duration_s"] = int(duration) if duration.isascii() and duration.isdigit() and len(duration) <= 3 \
            else duration  # not a number: left as text for the domain's clear refusal
    if form.get("vibrate") == "1":
        pattern["vibrate"] = True
    return pattern


# The list --------------------------------------------------------------------------------------

async def services(request: web.Request) -> web.Response:
    return await _list_page(request)


async def _list_page(request: web.Request, *, status: int = 200, error: str | None = None,
                     draft: Any = None) -> web.Response:
    return render(request, "services.html", status=status, services=await _catalog(request).admin_listing(),
                  error=error, draft={**NEW_SERVICE, **dict(draft or {})})


async def create_service(request: web.Request) -> web.Response:
    form = await read_form(request)
    try:
        made = await _catalog(request).create(
            form.get("id", "").strip(), form.get("name", ""), form.get("description", ""),
            send_time=form.get("send_time") or "00:00", daily_content=form.get("daily_content", "").strip() or None)
    except AppError as refused:
        return await _list_page(request, status=refused.status, error=refused.message, draft=form)
    await request.config_dict[keys.admin].record(actor(request), "service.create", made["id"], name=made["name"])
    return see_other(url(request, "admin.service", service_id=made["id"]))


# One service -----------------------------------------------------------------------------------

async def service(request: web.Request) -> web.Response:
    sent = request.query.get("sent", "")
    return await _service_page(request, sent=int(sent) if sent.isascii() and sent.isdigit() and len(sent) < 10
                               else None)


async def _service_page(request: web.Request, *, status: int = 200, error: str | None = None, sent: int | None = None,
                        draft: Any = None) -> web.Response:
    service_id = request.match_info["service_id"]
    after = request.query.get("after") or None
    if after is not None and not BIPUPU_ID.fullmatch(after):
        raise PageRefused(400, "after must be a bipupu_id")
    catalog = _catalog(request)
    detail = await catalog.one(service_id)
    return render(request, "service.html", status=status, service=detail, error=error, sent=sent,
                  page=await catalog.subscribers(service_id, after=after), actions=ACTIONS,
                  draft={**DRAFT, **dict(draft or {})}, effects=EFFECTS, fonts=FONTS,
                  audit=await request.config_dict[keys.admin].audit_log(target=service_id, limit=20))


async def edit_service(request: web.Request) -> web.Response:
    form = await read_form(request)
    service_id = request.match_info["service_id"]
    catalog = _catalog(request)
    before = await catalog.one(service_id)
    changes: dict[str, Any] = {
        "name": form.get("name", ""), "description": form.get("description", ""),
        "send_time": form.get("send_time", ""), "is_active": form.get("is_active") == "1",
        "commands": {action: words(form.get(f"words_{action}", "")) for action in ACTIONS}}
    if "daily_content" in form:
        changes["daily_content"] = form["daily_content"].strip() or None
    try:
        await catalog.update(service_id, **changes)
    except AppError as refused:
        return await _service_page(request, status=refused.status, error=refused.message)
    after = await catalog.one(service_id)
    changed = sorted(name for name in changes if before[name] != after[name])
    await request.config_dict[keys.admin].record(actor(request), "service.edit", service_id, fields=changed)
    return see_other(url(request, "admin.service", service_id=service_id))


async def broadcast(request: web.Request) -> web.Response:
    """Broadcast now from the page; to everyone (a notice service) only with the box ticked and a fresh password."""
    form = await read_form(request)
    service_id = request.match_info["service_id"]
    detail = await _catalog(request).one(service_id)
    if detail["reaches_everyone"]:
        if form.get("everyone") != "1":
            return await _service_page(request, status=422, draft=form, error=i18n.gettext(
                "This goes to every active user: tick the box to confirm."))
        if not await elevated(request, form):
            return confirm(request, form, failed=bool(form.get("confirm_password")))
    try:
        sent = await request.config_dict[keys.broadcaster].broadcast_now(
            service_id, form.get("content", ""), pattern_of(form))
    except AppError as refused:
        return await _service_page(request, status=refused.status, error=refused.message, draft=form)
    await request.config_dict[keys.admin].record(actor(request), "service.broadcast", service_id, sent=sent,
                                                 via="page")
    return see_other(f"{url(request, 'admin.service', service_id=service_id)}?sent={sent}")


ROUTES = [
    ("GET", "/services", services, "admin.services"),
    ("POST", "/services", create_service, "admin.create_service"),
    ("GET", "/services/{service_id}", service, "admin.service"),
    ("POST", "/services/{service_id}", edit_service, "admin.edit_service"),
    ("POST", "/services/{service_id}/broadcast", broadcast, "admin.broadcast"),
]

"""The admin pages' handlers: each page one question, each action a form that redirects back (Post/Redirect/Get)."""

from __future__ import annotations

import os
from datetime import datetime

from aiohttp import web

from ... import __version__, keys
from ...admin import AccountAdmin, overview
from ...errors import Forbidden, RateLimited, Unauthorized
from ...ids import floor_id
from ...records import relay_view
from ..responses import client_address
from . import i18n
from .guard import (PAGE_KEY, PageRefused, actor, clear_session_cookie, confirm, elevated, read_form, render,
                    see_other, set_session_cookie, url)


def _admin(request: web.Request) -> AccountAdmin:
    return request.config_dict[keys.admin]


# Signing in and out ----------------------------------------------------------------------------

LOGIN_REFUSALS = {
    "invalid_credentials": "Wrong username or password.",
    "not_admin": "This account is not an admin.",
    "account_deactivated": "This account is deactivated.",
    "too_many_attempts": "Too many attempts; try again in a while.",
}


async def login_page(request: web.Request) -> web.Response:
    if PAGE_KEY in request:
        return see_other(url(request, "admin.dashboard"))
    return render(request, "login.html", error=None, username="")


async def login(request: web.Request) -> web.Response:
    form = await read_form(request)
    username, password = form.get("username", ""), form.get("password", "")
    admin = _admin(request)
    try:
        who = await admin.check_admin(username, password, address=client_address(request))
    except (Unauthorized, Forbidden, RateLimited) as refused:
        status = 429 if isinstance(refused, RateLimited) else 403 if refused.code == "not_admin" else 401
        response = render(request, "login.html", status=status,
                          error=i18n.gettext(LOGIN_REFUSALS.get(refused.code, "Wrong username or password.")),
                          username=username[:64])
        if isinstance(refused, RateLimited):
            response.headers.update(refused.headers)
        return response
    session_id = await admin.open_page_session(who, address=client_address(request))
    response = see_other(url(request, "admin.dashboard"))
    set_session_cookie(request, response, session_id)
    return response


async def logout(request: web.Request) -> web.Response:
    await read_form(request)
    await _admin(request).end_page_session(request[PAGE_KEY], address=client_address(request))
    response = see_other(url(request, "admin.login"))
    clear_session_cookie(response)
    return response


# The dashboard ---------------------------------------------------------------------------------

async def dashboard(request: web.Request) -> web.Response:
    app = request.config_dict
    clock, zone = app[keys.clock], app[keys.zone]
    midnight = datetime.fromtimestamp(clock.time(), zone).replace(hour=0, minute=0, second=0, microsecond=0)
    figures = await app[keys.db].read(overview, floor_id(int(midnight.timestamp() * 1000)))
    last = app[keys.broadcaster].last
    size = sum(os.stat(path).st_size for path in _db_files(app[keys.config].db_path))
    return render(request, "dashboard.html", figures=figures, live_sockets=len(app[keys.hub]),
                  last=last if last.service_id else None, relay=relay_view(app.get(keys.relay))["state"], db_bytes=size,
                  version=__version__,
                  uptime_s=int(clock.monotonic() - app[keys.started_at]))


def _db_files(path) -> list:
    return [p for p in (path, path.with_name(path.name + "-wal")) if p.exists()]


# Users -----------------------------------------------------------------------------------------

async def users(request: web.Request) -> web.Response:
    text = request.query.get("q") or None
    after = request.query.get("after") or None
    page = await _admin(request).users(text, after=after)
    return render(request, "users.html", page=page, q=text or "")


async def user(request: web.Request) -> web.Response:
    bipupu_id = request.match_info["bipupu_id"]
    detail = await _admin(request).user(bipupu_id)
    return render(request, "user.html", user=detail, password=None,
                  audit=await _admin(request).audit_log(target=bipupu_id, limit=20))


async def create_user(request: web.Request) -> web.Response:
    form = await read_form(request)
    made = await _admin(request).create_user(form.get("username"), form.get("password"), form.get("nickname") or None,
                                             is_admin=form.get("is_admin") == "1", by=actor(request))
    return see_other(url(request, "admin.user", bipupu_id=made["bipupu_id"]))


async def user_action(request: web.Request) -> web.Response:
    bipupu_id, action = request.match_info["bipupu_id"], request.match_info["action"]
    form = await read_form(request)
    admin, by = _admin(request), actor(request)
    if action in DANGEROUS and not await elevated(request, form):
        return confirm(request, form, failed=bool(form.get("confirm_password")))
    if action == "deactivate":
        await admin.set_active(bipupu_id, False, by=by)
    elif action == "reactivate":
        await admin.set_active(bipupu_id, True, by=by)
    elif action == "grant-admin":
        await admin.set_admin(bipupu_id, True, by=by)
    elif action == "revoke-admin":
        await admin.set_admin(bipupu_id, False, by=by)
    elif action == "sign-out":
        await admin.sign_out_everywhere(bipupu_id, by=by)
    elif action == "reset-password":
        password = await admin.reset_password(bipupu_id, by=by)
        detail = await admin.user(bipupu_id)
        return render(request, "user.html", user=detail, password=password,
                      audit=await admin.audit_log(target=bipupu_id, limit=20))
    else:
        raise PageRefused(404, i18n.gettext("Not found"))
    return see_other(url(request, "admin.user", bipupu_id=bipupu_id))


DANGEROUS = {"reset-password", "grant-admin"}


# The audit log ---------------------------------------------------------------------------------

async def audit(request: web.Request) -> web.Response:
    before = request.query.get("before")
    if before is not None and not (before.isascii() and before.isdigit() and len(before) <= 18):
        raise PageRefused(400, "before must be an entry number")
    entries = await _admin(request).audit_log(before=int(before) if before else None)
    return render(request, "audit.html", entries=entries)


ROUTES = [
    ("GET", "/login", login_page, "admin.login"),
    ("POST", "/login", login, "admin.login_post"),
    ("POST", "/logout", logout, "admin.logout"),
    ("GET", "/", dashboard, "admin.dashboard"),
    ("GET", "/users", users, "admin.users"),
    ("POST", "/users", create_user, "admin.create_user"),
    ("GET", "/users/{bipupu_id}", user, "admin.user"),
    ("POST", "/users/{bipupu_id}/{action}", user_action, "admin.user_action"),
    ("GET", "/audit", audit, "admin.audit"),
]

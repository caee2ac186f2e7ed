"""The admin pages (/admin): a sub-application with its own middlewares, HTML error pages and templates."""

from __future__ import annotations

from importlib import resources

import aiohttp_jinja2
import jinja2
from aiohttp import web

from . import backup, i18n, pages, records, services
from .guard import page_middleware

TEMPLATES = resources.files("bipupu_server") / "templates"


def admin_app() -> web.Application:
    """Built by init_app and mounted at /admin; its handlers reach the server's state via config_dict."""
    app = web.Application(middlewares=[page_middleware])
    env = aiohttp_jinja2.setup(
        app, loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True,
        extensions=["jinja2.ext.i18n"], undefined=jinja2.StrictUndefined)
    env.install_gettext_callables(i18n.gettext, i18n.ngettext, newstyle=True)
    for method, path, handler, name in pages.ROUTES + services.ROUTES + records.ROUTES + backup.ROUTES:
        if method == "GET":
            app.router.add_get(path, handler, name=name)
        else:
            app.router.add_post(path, handler, name=name)
    return app

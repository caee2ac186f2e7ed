"""The admin pages in a real browser: Debian's Chromium driven by Playwright, against the real server.

.ci/run installs chromium and sets BIPUPU_TEST_BROWSER, so CI never skips these; elsewhere they are
skipped, saying why, when /usr/bin/chromium is missing (`apt-get install -y chromium`).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, AsyncIterator

import aiohttp
import pytest
from aiohttp import WSMsgType

from bipupu_server.protocol import SIGNED_OUT
from tests.conftest import ADMIN_PASSWORD, PASSWORD, WAIT
from tests.live import LiveServer

playwright_api = pytest.importorskip("playwright.async_api")

REQUIRED = os.environ.get("BIPUPU_TEST_BROWSER")  # set by .ci/run: the browser must be there
CHROMIUM = REQUIRED or shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-sync"]

if not Path(CHROMIUM).exists():
    if REQUIRED:
        raise RuntimeError(f"BIPUPU_TEST_BROWSER={REQUIRED} does not exist")
    pytest.skip("no Chromium at /usr/bin/chromium (apt-get install -y chromium)", allow_module_level=True)


@pytest.fixture
def live(make_config) -> Any:
    server = LiveServer(make_config())
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    """Chromium, on a new empty profile of its own (Playwright makes one per launch)."""
    async with playwright_api.async_playwright() as p:
        chromium = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield chromium
        finally:
            await chromium.close()


def watch(page: Any) -> list[str]:
    """Console errors and CSP violations of the page, collected as they happen."""
    problems: list[str] = []
    page.on("console", lambda msg: problems.append(msg.text) if msg.type in ("error", "warning") else None)
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    return problems


async def register(http: aiohttp.ClientSession, base: str, username: str, **extra: Any) -> dict[str, Any]:
    async with http.post(f"{base}/auth/register", json={"username": username, "password": PASSWORD, **extra}) as resp:
        assert resp.status == 201, await resp.text()
        return await resp.json()


async def test_an_admin_deactivates_a_user_and_their_socket_closes_with_4003(live, browser):
    base = live.url
    async with aiohttp.ClientSession() as http:
        alice = await register(http, base, "alice", nickname="<script>alert(1)</script>")
        ws = await http.ws_connect(f"{base}/ws", headers={"Authorization": f"Bearer {alice['access_token']}"})
        assert (await ws.receive_json(timeout=WAIT))["type"] == "auth_ok"

        page = await browser.new_page(locale="en-GB", viewport={"width": 360, "height": 740})
        problems = watch(page)
        await page.goto(f"{base}/admin/")
        assert page.url == f"{base}/admin/login"
        await page.fill("input[name=username]", "admin")
        await page.fill("input[name=password]", ADMIN_PASSWORD)
        await page.click("button[type=submit]")
        await page.wait_for_url(f"{base}/admin/")
        assert await page.text_content("#users") == "2"

        await page.click("nav >> text=Users")
        await page.fill("input[name=q]", "ali")
        await page.click("form.search button")
        await page.click(f"text={alice['bipupu_id']}")
        await page.wait_for_url(f"{base}/admin/users/{alice['bipupu_id']}")
        assert await page.text_content("h1") == f"<script>alert(1)</script> alice · {alice['bipupu_id']}"
        # usable at 360 px: nothing wider than the screen but the tables, which scroll on their own
        assert await page.evaluate("document.documentElement.scrollWidth") <= 360

        await page.click("button:has-text('Deactivate')")
        await page.wait_for_url(f"{base}/admin/users/{alice['bipupu_id']}")
        assert await page.text_content("#active") == "no"
        msg = await ws.receive(timeout=WAIT)
        assert (msg.type, msg.data) == (WSMsgType.CLOSE, SIGNED_OUT)

        await page.click("nav >> text=Audit log")
        rows = await page.locator("table.audit tbody tr").all_inner_texts()
        assert any("user.deactivate" in row and alice["bipupu_id"] in row for row in rows), rows
        assert any("admin.login" in row for row in rows), rows

        await page.click("button:has-text('Log out')")
        await page.wait_for_url(f"{base}/admin/login")
        await page.goto(f"{base}/admin/users")
        assert page.url == f"{base}/admin/login"
        assert problems == []


async def test_pages_speak_chinese_when_asked_and_show_no_errors(live, browser):
    page = await browser.new_page(locale="zh-CN")
    problems = watch(page)
    await page.goto(f"{live.url}/admin/login")
    assert await page.get_attribute("html", "lang") == "zh-Hans"
    assert "用户名" in await page.inner_text("form")
    await page.fill("input[name=username]", "admin")
    await page.fill("input[name=password]", "wrong password")
    await page.click("button[type=submit]")
    assert "用户名或密码错误" in await page.inner_text("[role=alert]")
    # The refused login is answered 401, which Chromium notes; nothing else may appear.
    assert problems == ["Failed to load resource: the server responded with a status of 401 (Unauthorized)"]

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


async def test_an_admin_creates_a_service_and_broadcasts_a_pattern_that_arrives_on_a_socket(live, browser):
    base = live.url
    async with aiohttp.ClientSession() as http:
        bob = await register(http, base, "bob")
        page = await browser.new_page(locale="en-GB", viewport={"width": 360, "height": 740})
        problems = watch(page)
        await page.goto(f"{base}/admin/login")
        await page.fill("input[name=username]", "admin")
        await page.fill("input[name=password]", ADMIN_PASSWORD)
        await page.click("button[type=submit]")
        await page.wait_for_url(f"{base}/admin/")

        await page.click("nav >> text=Services")
        await page.fill("#create-service input[name=id]", "weather.daily")
        await page.fill("#create-service input[name=name]", "Weather")
        await page.fill("#create-service input[name=description]", "Rain or shine")
        await page.fill("#create-service input[name=send_time]", "07:30")
        await page.click("#create-service button[type=submit]")
        await page.wait_for_url(f"{base}/admin/services/weather.daily")

        headers = {"Authorization": f"Bearer {bob['access_token']}"}
        async with http.post(f"{base}/messages", json={"receiver_id": "weather.daily", "content": "SUB"},
                             headers=headers) as resp:
            assert resp.status == 201, await resp.text()
        ws = await http.ws_connect(f"{base}/ws", headers=headers)
        assert (await ws.receive_json(timeout=WAIT))["type"] == "auth_ok"
        await page.reload()  # now one subscriber

        # The live preview follows the editor: text, colour, effect and font, with no inline style or script.
        await page.fill("#broadcast textarea[name=content]", "Storm at five")
        await page.fill("#broadcast input[name=led_color]", "#ff8800")
        await page.select_option("#broadcast select[name=effect]", "blink")
        await page.select_option("#broadcast select[name=font]", "neon")
        await page.fill("#broadcast input[name=duration_s]", "12")
        await page.check("#broadcast input[name=vibrate]")
        assert await page.text_content("#preview-text") == "Storm at five"
        assert await page.text_content("#preview-caption") == "#FF8800 · blink · neon · 12 s · ~"
        classes = (await page.get_attribute("#preview", "class")).split()
        assert {"fx-blink", "font-neon", "vibrate"} <= set(classes) and "fx-breathe" not in classes
        led = await page.eval_on_selector(".pupu-led", "e => getComputedStyle(e).backgroundColor")
        assert led == "rgb(255, 136, 0)"
        assert await page.evaluate("document.documentElement.scrollWidth") <= 360
        await page.click("#broadcast button[type=submit]")
        await page.wait_for_url(f"{base}/admin/services/weather.daily?sent=1")
        assert "1" in await page.text_content("#sent")

        card = await ws.receive_json(timeout=WAIT)
        assert card["type"] == "new_message", card
        message = card["payload"]
        assert (message["sender_id"], message["content"]) == ("weather.daily", "Storm at five")
        assert message["pattern"] == {"led_color": "#FF8800", "effect": "blink", "font": "neon", "duration_s": 12,
                                      "vibrate": True}

        await page.click("nav >> text=Audit log")
        rows = await page.locator("table.audit tbody tr").all_inner_texts()
        assert any("service.create" in row and "weather.daily" in row for row in rows), rows
        assert any("service.broadcast" in row and "sent=1" in row for row in rows), rows
        await page.click("button:has-text('Log out')")
        await page.wait_for_url(f"{base}/admin/login")
        await ws.close()
        assert problems == []

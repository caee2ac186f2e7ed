"""Screenshots of every admin page for the README, at phone and desktop width.

    python docs/screenshots/take.py

Needs Debian's chromium and Playwright (in the test setup). Starts run.py on 127.0.0.1 with a throwaway
data dir, fills it through the real API, then signs in and photographs each page: the phone in light
colours and Chinese, the desktop in dark colours and English. Console errors are printed at the end.
The server is fake_pupu_server.py: run.py's app with the BLE relay connected to the tests' fake
pupu device, so that the relay page shows a relay at work.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "docs" / "screenshots"
BASE = "http://127.0.0.1:18431"
ADMIN_PASSWORD = "admin-password-1"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run"]
# name: the page's path (after /admin)
PAGES = {
    "dashboard": "/", "users": "/users", "user": "/users/00000002", "messages": "/messages",
    "services": "/services", "service": "/services/cosmic.fortune", "relay": "/relay", "audit": "/audit",
    "backup": "/backup",
}
WIDTHS = (("phone", 360, "light", "zh-CN"), ("desktop", 1100, "dark", "en"))


def call(path: str, body: dict, token: str | None = None) -> dict:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    request = urllib.request.Request(BASE + path, data=json.dumps(body).encode(), headers=headers)
    with urllib.request.urlopen(request) as response:
        return json.load(response)


def fill_the_box() -> None:
    alice = call("/auth/register", {"username": "alice", "password": "correct horse",
                                    "nickname": "<script>alert(1)</script>"})
    zhang = call("/auth/register", {"username": "zhang_wei", "password": "correct horse", "nickname": "小张"})
    call("/messages", {"receiver_id": alice["bipupu_id"], "content": "今晚一起看星星？",
                       "pattern": {"led_color": "#3559C7", "effect": "breathe"}}, zhang["access_token"])
    call("/messages", {"receiver_id": "cosmic.fortune", "content": "TD"}, alice["access_token"])
    admin = call("/auth/login", {"username": "admin", "password": ADMIN_PASSWORD})
    call("/services/bipupu.notice/broadcast", {"content": "今晚 3 点维护 10 分钟",
                                               "pattern": {"led_color": "#FF8800", "effect": "blink"}},
         admin["access_token"])


def photograph(errors: list[str]) -> None:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        for name, width, scheme, lang in WIDTHS:
            context = browser.new_context(viewport={"width": width, "height": 740}, color_scheme=scheme, locale=lang)
            page = context.new_page()
            page.on("console", lambda m: errors.append(f"{m.type}: {m.text}") if m.type in ("error", "warning")
                    else None)
            page.goto(BASE + "/admin/")
            page.screenshot(path=OUT / f"login-{name}.png")
            page.fill("input[name=username]", "admin")
            page.fill("input[name=password]", ADMIN_PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(BASE + "/admin/")
            for shot, path in PAGES.items():
                page.goto(BASE + "/admin" + path)
                if shot == "service":  # show the pattern editor's preview at work
                    page.fill("#broadcast textarea[name=content]", "今日宜：出门散步")
                    page.fill("#broadcast input[name=led_color]", "#ff8800")
                    page.select_option("#broadcast select[name=effect]", "steady")
                    page.select_option("#broadcast select[name=font]", "neon")
                page.screenshot(path=OUT / f"{shot}-{name}.png", full_page=True)
            context.close()
        browser.close()


def main() -> int:
    data = tempfile.mkdtemp()
    env = {**os.environ, "BIPUPU_DATA_DIR": data, "BIPUPU_PORT": "18431", "BIPUPU_HOST": "127.0.0.1",
           "BIPUPU_ADMIN_PASSWORD": ADMIN_PASSWORD, "BIPUPU_BCRYPT_COST": "4",
           "BIPUPU_BLE_DEVICE": "pupu-1", "BIPUPU_BLE_OWNER": "00000002"}  # alice's cards light the fake device
    server = subprocess.Popen([sys.executable, "docs/screenshots/fake_pupu_server.py"], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    errors: list[str] = []
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(BASE + "/health")
                break
            except OSError:
                time.sleep(0.1)
        fill_the_box()
        photograph(errors)
    finally:
        server.terminate()
        server.wait()
    print("console errors:", errors)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())

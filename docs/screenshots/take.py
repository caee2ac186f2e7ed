"""Screenshots of the admin pages for the README: `python docs/screenshots/take.py` (needs Debian's chromium
and playwright, both in the test setup). Starts run.py on 127.0.0.1 with a throwaway data dir."""
from pathlib import Path
ROOT = Path(__file__).resolve().parents[2]
import os, subprocess, sys, time, tempfile, urllib.request
from playwright.sync_api import sync_playwright
data = tempfile.mkdtemp()
env = {**os.environ, "BIPUPU_DATA_DIR": data, "BIPUPU_PORT": "18431", "BIPUPU_HOST": "127.0.0.1",
       "BIPUPU_ADMIN_PASSWORD": "admin-password-1", "BIPUPU_BCRYPT_COST": "4"}
proc = subprocess.Popen([sys.executable, "run.py"], cwd=str(ROOT), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
base = "http://127.0.0.1:18431"
for _ in range(100):
    try:
        urllib.request.urlopen(base + "/health"); break
    except Exception:
        time.sleep(0.1)
import json
def post(path, body):
    req = urllib.request.Request(base + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(req))
post("/auth/register", {"username": "alice", "password": "correct horse", "nickname": "<script>alert(1)</script>"})
post("/auth/register", {"username": "zhang_wei", "password": "correct horse", "nickname": "小张"})
errors = []
try:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--headless", "--no-sandbox", "--disable-gpu",
              "--disable-background-networking", "--disable-component-update", "--no-first-run"])
        for name, w, scheme, lang in (("phone", 360, "light", "zh-CN"), ("desktop", 1100, "dark", "en")):
            ctx = b.new_context(viewport={"width": w, "height": 740}, color_scheme=scheme, locale=lang)
            page = ctx.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.goto(base + "/admin/")
            page.screenshot(path=f"{ROOT}/docs/screenshots/login-{name}.png")
            page.fill("input[name=username]", "admin"); page.fill("input[name=password]", "admin-password-1")
            page.click("button[type=submit]")
            page.wait_for_url(base + "/admin/")
            page.screenshot(path=f"{ROOT}/docs/screenshots/dashboard-{name}.png", full_page=True)
            page.goto(base + "/admin/users"); page.screenshot(path=f"{ROOT}/docs/screenshots/users-{name}.png", full_page=True)
            page.goto(base + "/admin/users/00000002"); page.screenshot(path=f"{ROOT}/docs/screenshots/user-{name}.png", full_page=True)
            page.goto(base + "/admin/audit"); page.screenshot(path=f"{ROOT}/docs/screenshots/audit-{name}.png", full_page=True)
            ctx.close()
        b.close()
finally:
    proc.terminate(); proc.wait()
print("console errors:", errors)

"""The real server as a subprocess: `python run.py` on 127.0.0.1, for the tests that need a process."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

RUN_PY = Path(__file__).resolve().parents[1] / "run.py"
READY_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 10.0
CLI_TIMEOUT_S = 30.0
FAIL_FAST_S = 10.0  # a refused start needs no more; were it to serve instead, this ends it

# No proxy, even if the environment names one: every request goes to our own process.
_http = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# ---------------------------------------------------------------------------------------

def free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def environment(**settings: str) -> dict[str, str]:
    """os.environ without any BIPUPU_* of the caller, plus cheap bcrypt and the given settings."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("BIPUPU_")}
    env["BIPUPU_BCRYPT_COST"] = "4"
    env.update(settings)
    return env


def call(base: str, method: str, path: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
    """One JSON request; returns (status, decoded body or None)."""
    headers = {"Accept": "application/json"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(base + path, data=data, method=method, headers=headers)
    try:
        with _http.open(request, timeout=5) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as err:
        with err:
            status, raw = err.code, err.read()
    return status, (json.loads(raw) if raw else None)


class Server:
    """One `python run.py` (or another `command`) serving on 127.0.0.1; stdout and stderr go to files."""

    def __init__(self, tmp: Path, data_dir: Path, env: dict[str, str], name: str,
                 command: list[str] | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = data_dir
        self.out_path = tmp / f"{name}.stdout"
        self.err_path = tmp / f"{name}.stderr"
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(
                [*(command or [sys.executable, str(RUN_PY)]), "--host", "127.0.0.1", "--port", str(self.port),
                 "--data-dir", str(data_dir)],
                cwd=tmp, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
            )

    @property
    def stdout(self) -> str:
        return self.out_path.read_text(encoding="utf-8", errors="replace")

    @property
    def stderr(self) -> str:
        return self.err_path.read_text(encoding="utf-8", errors="replace")

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"server exited with {self.proc.returncode} before it was ready:\n{self.stderr}")
            try:
                status, body = call(self.url, "GET", "/health")
                if status == 200 and body["status"] == "ok":
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.05)  # a real process: nothing but polling on the real clock says it is ready
        pytest.fail(f"server not ready within {READY_TIMEOUT_S} s:\n{self.stderr}")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Send `sig` and wait for the exit; returns the exit status (kills after the timeout)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"server did not exit within {STOP_TIMEOUT_S} s of signal {sig}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def run_cli(tmp: Path, *args: str, data_dir: Path | None = None, stdin: str | None = None,
            timeout: float = CLI_TIMEOUT_S, **settings: str) -> subprocess.CompletedProcess[str]:
    """Run `python run.py [--data-dir D] ARGS` to completion; no terminal on stdin."""
    command = [sys.executable, str(RUN_PY)]
    if data_dir is not None:
        command += ["--data-dir", str(data_dir)]
    command += list(args)
    return subprocess.run(
        command, cwd=tmp, env=environment(**settings), capture_output=True, text=True, timeout=timeout,
        **({"input": stdin} if stdin is not None else {"stdin": subprocess.DEVNULL}),
    )


def assert_one_line_failure(result: subprocess.CompletedProcess[str], status: int = 1,
                            prefix: str = "bipupu: error:") -> str:
    """Exit `status`, exactly one line on stderr starting with `prefix`, no traceback; returns it."""
    everything = result.stdout + result.stderr
    assert result.returncode == status, everything
    assert "Traceback" not in everything, everything
    line = result.stderr.strip()
    assert line and "\n" not in line, f"expected one line on stderr, got:\n{result.stderr}"
    assert line.startswith(prefix), line
    return line

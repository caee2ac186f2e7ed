"""The processes the bench starts: the server, the floor, wrk and the client roles; all stopped at exit."""

from __future__ import annotations

import ctypes
import json
import os
import queue
import re
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

CLK_TCK = os.sysconf("SC_CLK_TCK")
STARTED: list["Child"] = []  # every child ever started, for stop_all()


class BenchError(Exception):
    """A phase could not be measured; the message says which and why."""


def raise_fd_limit(wanted: int = 65536) -> int:
    """Allow tens of thousands of sockets here and in every child (they inherit the limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for limit in ((wanted, max(wanted, hard)), (min(wanted, hard), hard)):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, limit)
            break
        except (ValueError, OSError):
            continue
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """In the child: get SIGTERM if the bench itself is killed, so nothing outlives it."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class Child:
    """One started process: its own session (Ctrl-C reaches only the bench, which stops it),
    output to a log file or read line by line, and its RSS and CPU time from /proc."""

    def __init__(self, name: str, argv: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None,
                 log: Path | None = None, talk: bool = False):
        self.name = name
        self.log = log
        self.lines: queue.Queue[str | None] = queue.Queue()
        out = open(log, "ab") if log is not None else subprocess.PIPE
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            argv, env=env, cwd=cwd, stdin=subprocess.PIPE if talk else subprocess.DEVNULL,
            stdout=out if log is not None else subprocess.PIPE, stderr=out if log is not None else None,
            start_new_session=True, preexec_fn=_die_with_parent)
        STARTED.append(self)
        if log is not None:
            out.close()
        else:
            threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.lines.put(raw.decode(errors="replace").rstrip("\n"))
        self.lines.put(None)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def expect(self, word: str, timeout: float) -> list[str]:
        """Wait for a stdout line starting with `word`; returns its remaining words."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BenchError(f"{self.name}: no '{word}' within {timeout:.0f} s")
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise BenchError(f"{self.name} ended (exit {self.proc.wait()}) before '{word}'")
            parts = line.split(" ", 1) if word == "result" else line.split()
            if parts and parts[0] == word:
                return parts[1:]

    def result(self, timeout: float) -> dict[str, Any]:
        """The `result {json}` line a client role prints last."""
        return json.loads(self.expect("result", timeout)[0])

    def tell(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def close_stdin(self) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()
            except OSError:
                pass

    def rss_kib(self) -> int:
        """VmRSS from /proc/<pid>/status."""
        with open(f"/proc/{self.pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise BenchError(f"no VmRSS for {self.name}")

    def cpu_s(self) -> float:
        """User + system CPU seconds of the process (all its threads)."""
        with open(f"/proc/{self.pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM (a clean shutdown for the server), then SIGKILL after `timeout`; returns the exit status."""
        self.close_stdin()
        if self.proc.poll() is None:
            try:
                os.killpg(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(5)
        return self.proc.returncode


def machine_cpu_s() -> float:
    """CPU seconds all cores have been busy since boot (/proc/stat), to see what else ran."""
    with open("/proc/stat") as fh:
        fields = [int(v) for v in fh.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / CLK_TCK


def children_cpu_s() -> float:
    """CPU seconds of the children that have ended and been waited for (wrk, client roles)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def stop_all() -> None:
    """Stop every child still running, clients first (the server then has no sockets to close)."""
    for child in reversed(STARTED):
        if child.alive():
            child.stop(timeout=10)


def terminate_on_signals() -> None:
    """SIGINT and SIGTERM unwind the bench (even when started with SIGINT ignored, as `cmd &` does),
    so its finally blocks stop the children."""
    def handler(signum, frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, handler)


# HTTP from the orchestrator: a few calls only, so the standard library is enough ----------------

def http(method: str, url: str, body: dict | None = None, token: str | None = None,
         timeout: float = 10) -> tuple[int, bytes]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def login(base: str, username: str, password: str) -> dict[str, Any]:
    status, body = http("POST", f"{base}/auth/login", {"username": username, "password": password}, timeout=30)
    if status != 200:
        raise BenchError(f"login of {username} answered {status}: {body[:200]!r}")
    return json.loads(body)


def wait_healthy(base: str, child: Child, timeout: float) -> float:
    """Poll /health until 200; returns seconds since the child was started."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not child.alive():
            raise BenchError(f"{child.name} exited with {child.proc.returncode} during start-up; see {child.log}")
        try:
            status, _ = http("GET", f"{base}/health", timeout=1)
            if status == 200:
                return time.perf_counter() - child.started
        except OSError:
            pass
        time.sleep(0.005)
    raise BenchError(f"{child.name}: /health not 200 within {timeout:.0f} s; see {child.log}")


def metric(base: str, name: str) -> float | None:
    """One unlabelled value from /metrics."""
    status, body = http("GET", f"{base}/metrics")
    if status != 200:
        return None
    match = re.search(rf"^{re.escape(name)} ([0-9.eE+-]+)$", body.decode(), re.M)
    return float(match.group(1)) if match else None


def wait_for_log(log: Path, pattern: str, timeout: float, child: Child | None = None) -> re.Match:
    """Wait for a line matching `pattern` in a log file."""
    regex = re.compile(pattern, re.M)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace") if log.exists() else ""
        match = regex.search(text)
        if match:
            return match
        if child is not None and not child.alive():
            raise BenchError(f"{child.name} exited with {child.proc.returncode}; see {log}")
        time.sleep(0.1)
    raise BenchError(f"no line matching {pattern!r} in {log} within {timeout:.0f} s")


def python() -> str:
    return sys.executable

#!/usr/bin/env python3
"""The benchmark of issue 6, in one command: `python bench/run.py [--quick] [--json PATH]`.

Starts the real server (run.py, fresh temp data dirs) and ../shared/bench/floor.py on
127.0.0.1, measures the six scenarios below in one run, prints a table (figure, target,
pass/fail) and writes every figure as JSON (bench/results.json unless --json says otherwise).

  1. POST /messages at 32 concurrent connections: throughput, p50/p99, server vs floor
  2. delivery latency POST -> WebSocket new_message at a steady moderate rate
  3. 10,000 idle authenticated WebSockets: RSS per socket, time to push a broadcast to all
  4. a broadcast to 100,000 subscribers: store and push time, worst event-loop lag
  5. login storm (50 concurrent logins, bcrypt cost 12): ping round trip on an open socket
  6. start-up time (process start -> first 200 from /health) and idle RSS

Every phase has a timeout, a watchdog ends the whole run after --max-minutes, and every
process the bench started is stopped on the way out (also on Ctrl-C and SIGTERM).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import re
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from statistics import mean, median
from typing import Any, Callable

import bcrypt

sys.path.insert(0, str(Path(__file__).resolve().parent))
import seed  # noqa: E402
from processes import (BenchError, Child, children_cpu_s, free_port, http, login, machine_cpu_s, metric,  # noqa: E402
                       python, raise_fd_limit, stop_all, terminate_on_signals, wait_healthy)

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
CLIENTS = str(BENCH / "clients.py")
DEFAULT_FLOOR = REPO.parent / "shared" / "bench" / "floor.py"
PASSWORD = "bench-password-1"  # every bench account's; cost-4 hashes, except the login storm's cost-12 ones
STORM_PASSWORD = "storm-password-1"
HELLO = "bench.hello"  # a daily service of the socket holders only: "one message to all 10,000 sockets"
FORTUNE = "cosmic.fortune"


@dataclass
class Plan:
    """How big each scenario is; --quick shrinks everything for a smoke run."""

    connections: int = 32
    post_seconds: float = 10
    post_warmup: float = 2
    post_rounds: int = 5
    pinned_rounds: int = 3  # the same comparison on one core each (0: skip)
    latency_rate: float = 100
    latency_seconds: float = 10
    latency_pairs: int = 5
    sockets: int = 10_000
    per_user: int = 5
    subscribers: int = 100_000
    storm_logins: int = 50
    storm_ping_interval: float = 0.02
    fanout_ping_interval: float = 0.05  # part B's pinger, from before the sockets connect to after the fan-out
    storm_b_logins: int = 200  # part B: a login storm (cost 12) while the sockets are open
    reconnects: int = 2_000  # part B: sockets closing and opening again with since
    wave_s: float = 2.0  # part B: every socket's keepalive ping within this many seconds (5,000 a second)

    @classmethod
    def quick(cls) -> "Plan":
        return cls(post_seconds=4, post_warmup=1, post_rounds=1, pinned_rounds=1, latency_seconds=4, sockets=1_000,
                   subscribers=10_000, storm_logins=20, storm_b_logins=20, reconnects=200)


# Figures -------------------------------------------------------------------------------------------

def pin(pid: int, cores: set[int]) -> None:
    """Put every thread of a process on `cores` (threads it starts later inherit the creator's)."""
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            os.sched_setaffinity(int(task), cores)
        except (ProcessLookupError, PermissionError):
            pass


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(1, min(len(ordered), -(-int(q * len(ordered)) // 100))) - 1]


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


class LagWatch:
    """Polls the server's bipupu_event_loop_lag_seconds (its own 250 ms probe) every `interval`,
    so the worst lag of one window can be told apart from the worst since start."""

    def __init__(self, base: str, interval: float = 0.1):
        self.base, self.interval = base, interval
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                value = metric(self.base, "bipupu_event_loop_lag_seconds")
                if value is not None:
                    self.samples.append((time.time(), value))
            except OSError:
                pass
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def worst(self, start: float, end: float) -> float | None:
        """Worst lag the probe reported in [start, end] (a probe reports up to ~0.3 s after it ran)."""
        values = [lag for at, lag in self.samples if start <= at <= end + 0.4]
        return max(values) if values else None


def timeline(samples: list, start: float, end: float, scale: float = 1000) -> list[list[float]]:
    """(seconds since start, value in ms) of the samples from 1 s before start to 1 s after end."""
    return [[round(at - start, 3), round(value * scale, 2)] for at, value in samples if start - 1 <= at <= end + 1]


def spread(times: list[float], start: float) -> dict[str, Any]:
    """When the sockets got a push, in seconds after the broadcast started."""
    after = [t - start for t in times]
    return {q: round(pct(after, n), 3) if after else None for q, n in (("p10_s", 10), ("p50_s", 50), ("p90_s", 90),
                                                                      ("max_s", 100))}


def gc_pauses(log: Path | None, start: float, end: float) -> list[list[float]]:
    """(seconds since start, ms) of the GC passes bench/gcwatch.py logged in the window (--gc-log)."""
    if log is None or not log.exists():
        return []
    found = re.findall(r"^GC pause ([0-9.]+) generation \d+ ([0-9.]+) ms", log.read_text(errors="replace"), re.M)
    return [[round(float(at) - start, 3), float(pause)] for at, pause in found if start - 1 <= float(at) <= end + 1]


def ping_window(samples: list[list[float]], start: float, end: float) -> dict[str, Any]:
    rtts = [rtt for sent, rtt in samples if start <= sent <= end]
    return {"pings": len(rtts), "p50_ms": ms(pct(rtts, 50)), "p99_ms": ms(pct(rtts, 99)),
            "max_ms": ms(max(rtts) if rtts else None)}


# The bench ---------------------------------------------------------------------------------------

class Bench:
    def __init__(self, args: argparse.Namespace, work: Path):
        self.args = args
        self.plan = Plan.quick() if args.quick else Plan()
        self.work = work
        self.results: dict[str, Any] = {}
        self.errors: dict[str, str] = {}
        self.zone = broadcast_zone()
        self.hash4 = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()
        self.hash12: str | None = None
        self.admin_password = secrets.token_urlsafe(12)  # part B broadcasts through the admin JSON door

    # processes

    def server_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BIPUPU_")}
        # Every client is on 127.0.0.1: no per-address connection cap (part B's 200 logins arrive at once).
        env.update(BIPUPU_RATE_LIMIT="off", BIPUPU_LIMIT_CONNECTIONS="0", BIPUPU_ADMIN_PASSWORD=self.admin_password,
                   BIPUPU_TIMEZONE=self.zone, TZ="UTC", PYTHONUNBUFFERED="1")
        env.update(setting.split("=", 1) for setting in self.args.env)  # --env: e.g. BIPUPU_GC_KEEPER=off
        return env

    def start_server(self, name: str, data_dir: Path, port: int) -> Child:
        wrap = [str(BENCH / "gcwatch.py")] if self.args.gc_log else []
        argv = [python(), *wrap, str(REPO / "run.py"), "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(data_dir)]
        return Child(name, argv, env=self.server_env(), cwd=REPO, log=self.work / f"{name}.log")

    def client(self, name: str, *argv: str, talk: bool = False) -> Child:
        return Child(name, [python(), CLIENTS, *argv], talk=talk)

    def guarded(self, key: str, phase: Callable[[], None]) -> None:
        """Run one scenario; a failure is recorded and the bench goes on with the next."""
        began = time.monotonic()
        print(f"-- {key} ...", flush=True)
        try:
            phase()
        except BenchError as exc:
            self.errors[key] = str(exc)
            print(f"   FAILED: {exc}", flush=True)
        print(f"   ({time.monotonic() - began:.0f} s)", flush=True)

    # part A: one server for start-up, POST throughput, push latency and the login storm

    def part_a(self) -> None:
        plan = self.plan
        data = self.work / "server-a"
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        self.guarded("startup", lambda: self.startup(data, port, base))
        if not (data / "bipupu.db").exists():
            raise BenchError("server A never created its database")
        db = data / "bipupu.db"
        senders = [f"bench_sender{i}" for i in range(plan.latency_pairs)]
        receivers = [f"bench_receiver{i}" for i in range(plan.latency_pairs)]
        seed.add_users(db, 2, senders, self.hash4)
        receiver_ids = seed.add_users(db, 2 + len(senders), receivers, self.hash4)
        seed.add_users(db, 2 + 2 * len(senders), ["bench_pinger"], self.hash4)
        self.hash12 = bcrypt.hashpw(STORM_PASSWORD.encode(), bcrypt.gensalt(12)).decode()
        storm_users = [f"bench_storm{i}" for i in range(plan.storm_logins)]
        seed.add_users(db, 3 + 2 * len(senders), storm_users, self.hash12)
        server = self.start_server("server-a", data, port)
        wait_healthy(base, server, 30)
        tokens = {name: login(base, name, PASSWORD)["access_token"] for name in senders + receivers + ["bench_pinger"]}
        try:
            self.guarded("post_throughput", lambda: self.post_throughput(
                server, base, tokens[senders[0]], receiver_ids[0]))
            pairs = [{"sender_token": tokens[s], "receiver_id": r, "receiver_token": tokens[n]}
                     for s, r, n in zip(senders, receiver_ids, receivers)]
            self.guarded("push_latency", lambda: self.push_latency(base, pairs))
            self.guarded("login_storm", lambda: self.login_storm(server, base, tokens["bench_pinger"], storm_users))
        finally:
            status = server.stop()
            self.results.setdefault("startup", {})["clean_stop_exit_status"] = status

    def startup(self, data: Path, port: int, base: str) -> None:
        server = self.start_server("server-a-first", data, port)
        try:
            seconds = wait_healthy(base, server, 60)
            time.sleep(1.0)
            rss = server.rss_kib()
        finally:
            server.stop()
        self.results["startup"] = {"fresh_data_dir_s": round(seconds, 3), "idle_rss_mib": round(rss / 1024, 1)}
        print(f"   start-up {seconds:.3f} s, idle RSS {rss / 1024:.1f} MiB", flush=True)

    def post_throughput(self, server: Child, base: str, token: str, receiver: str) -> None:
        """The server against the floor as given and the floor on uvloop, side by side, round by round; then the
        same with each of the three pinned to core 0 and the load generator on core 1 (a Pi's one core)."""
        plan = self.plan
        floors: dict[str, tuple[Child, str, str]] = {}
        try:
            for name, extra in (("floor", []), ("floor_uvloop", ["--uvloop"])):
                port = free_port()
                url = f"http://127.0.0.1:{port}"
                child = Child(name, [python(), str(self.args.floor), str(port), str(self.work / f"{name}.db"), *extra],
                              cwd=self.work, log=self.work / f"{name}.log")
                wait_until_up(f"{url}/ping", child, 30)
                status, body = http("GET", f"{url}/token/00000002")
                if status != 200:
                    raise BenchError(f"{name} /token answered {status}")
                floors[name] = (child, url, body.decode())
            targets = {"server": (server, base, token), **floors}
            stored_before = metric(base, 'bipupu_messages_total{msg_type="USER_POSTCARD"}') or 0
            result = self.compare(targets, receiver, plan.post_rounds)
            pinned = None
            if plan.pinned_rounds and len(os.sched_getaffinity(0)) >= 2:
                cores = sorted(os.sched_getaffinity(0))
                everywhere = set(cores)
                print(f"   pinned: server and floors on core {cores[0]}, the load generator on core {cores[1]}",
                      flush=True)
                for proc, _url, _tok in targets.values():
                    pin(proc.pid, {cores[0]})
                try:
                    pinned = self.compare(targets, receiver, plan.pinned_rounds, load_cores={cores[1]})
                finally:
                    for proc, _url, _tok in targets.values():
                        if proc.proc.poll() is None:
                            pin(proc.pid, everywhere)
                pinned.update(target_core=cores[0], load_core=cores[1])
        finally:
            for child, _url, _tok in floors.values():
                child.stop()
        stored = (metric(base, 'bipupu_messages_total{msg_type="USER_POSTCARD"}') or 0) - stored_before
        self.results["post_throughput"] = {
            "tool": result["rounds"][0]["tool"], "connections": plan.connections, "seconds": plan.post_seconds,
            "warmup_s": plan.post_warmup, **result, "pinned": pinned, "synchronous": synchronous_setting(),
            "server_stored_incl_warmups": int(stored),
        }

    def compare(self, targets: dict[str, tuple[Child, str, str]], receiver: str, rounds_n: int,
                load_cores: set[int] | None = None) -> dict[str, Any]:
        """Rounds in which every target takes the same load back to back, the order rotating; the figures are
        the medians of the per-round ratios server / each floor (a round's pair shares the machine's mood)."""
        plan = self.plan
        names = list(targets)
        rounds: list[dict[str, Any]] = []
        server_requests = 0
        for r in range(rounds_n):
            shift = r % len(names)
            for name in names[shift:] + names[:shift]:  # rotate: no side always first
                proc, url, tok = targets[name]
                self.load(url, tok, receiver, plan.post_warmup, load_cores)
                cpu, loadgen, busy, began = proc.cpu_s(), children_cpu_s(), machine_cpu_s(), time.monotonic()
                run = self.load(url, tok, receiver, plan.post_seconds, load_cores)
                cpu, loadgen = proc.cpu_s() - cpu, children_cpu_s() - loadgen
                busy, elapsed = machine_cpu_s() - busy, time.monotonic() - began
                # % of one core; "others" is whatever else ran on the machine meanwhile
                run.update(server_cpu_pct=round(100 * cpu / elapsed, 1), loadgen_cpu_pct=round(100 * loadgen / elapsed, 1),
                           others_cpu_pct=round(100 * max(0.0, busy - cpu - loadgen) / elapsed, 1))
                run.update(target=name, round=r + 1)
                if run["others_cpu_pct"] > 20:
                    print(f"   warning: other processes used {run['others_cpu_pct']}% of a core during this round;"
                          " its figure is noisy", flush=True)
                rounds.append(run)
                if name == "server":
                    server_requests += run["requests"]
                print(f"   round {r + 1} {name:12}: {run['rps']:8.1f} req/s  p50 {run['p50_ms']:.2f} ms"
                      f"  p99 {run['p99_ms']:.2f} ms  errors {run['errors']}  cpu: target {run['server_cpu_pct']}%"
                      f" load {run['loadgen_cpu_pct']}% others {run['others_cpu_pct']}%", flush=True)

        def side(name: str) -> dict[str, Any]:
            runs = [run for run in rounds if run["target"] == name]
            return {"rps": round(median(r["rps"] for r in runs), 1), "p50_ms": round(median(r["p50_ms"] for r in runs), 2),
                    "p99_ms": round(median(r["p99_ms"] for r in runs), 2),
                    "errors": sum(r["errors"] for r in runs), "cpu_pct": round(mean(r["server_cpu_pct"] for r in runs), 1),
                    "others_cpu_pct": round(mean(r["others_cpu_pct"] for r in runs), 1)}

        def rps(n: int, name: str) -> float:
            return next(x["rps"] for x in rounds if x["round"] == n and x["target"] == name)

        out: dict[str, Any] = {"rounds": rounds, "server_answered_during_runs": server_requests,
                               **{name: side(name) for name in names}}
        for floor in names[1:]:
            paired = [rps(n, "server") / rps(n, floor) for n in range(1, rounds_n + 1)]
            suffix = floor[len("floor"):]  # "" or "_uvloop"
            out[f"ratio{suffix}"] = round(median(paired), 3)
            out[f"round_ratios{suffix}"] = [round(x, 3) for x in paired]
        return out

    def load(self, base: str, token: str, receiver: str, seconds: float,
             cores: set[int] | None = None) -> dict[str, Any]:
        """One timed run of POST /messages at `connections`, with wrk if installed, else aiohttp; on `cores` if given."""
        plan = self.plan
        wrk = shutil.which("wrk") if not self.args.no_wrk else None
        on = ["taskset", "-c", ",".join(map(str, sorted(cores)))] if cores else []
        if wrk:
            env = {**os.environ, "TOKEN": token, "RECEIVER": receiver}
            child = Child("wrk", [*on, wrk, "-t1", f"-c{plan.connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s",
                                  "-s", str(BENCH / "post.lua"), f"{base}/messages"], env=env)
            words = child.expect("BENCH_JSON", seconds + 30)
            data = json.loads(" ".join(words))
            child.proc.wait(10)
            duration = data["duration_us"] / 1e6
            errors = sum(v for k, v in data.items() if k.startswith("errors_"))
            return {"tool": "wrk", "requests": data["requests"], "rps": round(data["requests"] / duration, 1),
                    "p50_ms": data["p50_us"] / 1000, "p90_ms": data["p90_us"] / 1000, "p99_ms": data["p99_us"] / 1000,
                    "max_ms": data["max_us"] / 1000, "errors": errors, "non_2xx": data["errors_status"]}
        child = Child("loadgen", [*on, python(), CLIENTS, "post", base, "--token", token, "--receiver", receiver,
                                  "--connections", str(plan.connections), "--duration", str(seconds)])
        data = child.result(seconds + 60)
        child.proc.wait(10)  # reaped, so its CPU time counts as the load generator's
        return {"tool": "aiohttp", "requests": data["requests"], "rps": data["rps"], "p50_ms": data["p50_ms"],
                "p90_ms": data["p90_ms"], "p99_ms": data["p99_ms"], "max_ms": data["max_ms"],
                "errors": data["errors"] + data["non_2xx"], "non_2xx": data["non_2xx"]}

    def push_latency(self, base: str, pairs: list[dict[str, str]]) -> None:
        plan = self.plan
        path = self.work / "pairs.json"
        path.write_text(json.dumps(pairs))
        child = self.client("latency", "latency", base, "--pairs", str(path), "--rate", str(plan.latency_rate),
                            "--duration", str(plan.latency_seconds))
        data = child.result(plan.latency_seconds + 60)
        self.results["push_latency"] = data
        print(f"   POST->WS p50 {data['push']['p50_ms']} ms p99 {data['push']['p99_ms']} ms"
              f" (n={data['push']['n']}, failures {data['failures']})", flush=True)

    def login_storm(self, server: Child, base: str, ping_token: str, users: list[str]) -> None:
        plan = self.plan
        path = self.work / "storm.json"
        path.write_text(json.dumps(users))
        lag = LagWatch(base)
        pinger = self.client("pinger-a", "ping", base, "--token", ping_token,
                             "--interval", str(plan.storm_ping_interval), talk=True)
        try:
            pinger.expect("ready", 30)
            time.sleep(2)  # a baseline before the storm
            cpu = server.cpu_s()
            storm = self.client("storm", "storm", base, "--users", str(path), "--password", STORM_PASSWORD).result(240)
            cpu = server.cpu_s() - cpu
            time.sleep(0.5)
            pinger.close_stdin()
            pings = pinger.result(30)
        finally:
            lag.stop()
        during = ping_window(pings["samples"], storm["started"], storm["finished"])
        before = ping_window(pings["samples"], 0, storm["started"])
        self.results["login_storm"] = {
            "logins": storm["logins"], "bcrypt_cost": 12, "statuses": storm["statuses"],
            "storm_s": storm["duration_s"], "login_latency": storm["login"], "ping_interval_s": plan.storm_ping_interval,
            "ping_during": during, "ping_before": before, "pings_lost": pings["lost"],
            "server_loop_lag_max_ms": ms(lag.worst(storm["started"], storm["finished"])),
            "server_cpu_pct": round(100 * cpu / storm["duration_s"], 1),
            "ping_timeline_ms": timeline(pings["samples"], storm["started"], storm["finished"]),
        }
        if self.args.gc_log:
            self.results["login_storm"]["gc_pauses_ms"] = gc_pauses(server.log, storm["started"], storm["finished"])
        print(f"   {storm['logins']} logins in {storm['duration_s']} s; ping p99 {during['p99_ms']} ms"
              f" max {during['max_ms']} ms over {during['pings']} pings", flush=True)

    # part B: one server with 100,000 subscribers, 10,000 sockets of them, one broadcast each

    def part_b(self) -> None:
        plan = self.plan
        data = self.work / "server-b"
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        first = self.start_server("server-b-first", data, port)  # creates the schema
        try:
            fresh_s = wait_healthy(base, first, 60)
        finally:
            first.stop()
        self.results.setdefault("startup", {})["fresh_data_dir_second_sample_s"] = round(fresh_s, 3)
        db = data / "bipupu.db"
        socket_users = plan.sockets // plan.per_user
        stride = plan.subscribers // socket_users
        names = [f"bench_fan{i:06d}" for i in range(plan.subscribers)]
        began = time.monotonic()
        ids = seed.add_users(db, 2, names, self.hash4)
        seed.add_users(db, 2 + len(ids), ["bench_pinger"], self.hash4)
        if self.hash12 is None:
            self.hash12 = bcrypt.hashpw(STORM_PASSWORD.encode(), bcrypt.gensalt(12)).decode()
        storm_users = [f"bench_bstorm{i}" for i in range(plan.storm_b_logins)]
        seed.add_users(db, 3 + len(ids), storm_users, self.hash12)
        seed.subscribe(db, FORTUNE, ids)
        seed.add_daily_service(db, HELLO, "hello, all sockets", "23:59")
        holders = list(range(0, plan.subscribers, stride))[:socket_users]  # spread over the whole fan-out
        seed.subscribe(db, HELLO, [ids[i] for i in holders])
        seed.set_send_time(db, [FORTUNE, HELLO], "23:59")  # not before the bench says so (local time is ~12:00)
        print(f"   seeded {len(ids):,} subscribers in {time.monotonic() - began:.1f} s", flush=True)
        server = self.start_server("server-b", data, port)
        try:
            restart_s = wait_healthy(base, server, 120)
            time.sleep(1)
            self.results["startup"].update(with_subscribers=plan.subscribers, with_subscribers_s=round(restart_s, 3),
                                           with_subscribers_idle_rss_mib=round(server.rss_kib() / 1024, 1))
            users_file = self.work / "holders.json"
            users_file.write_text(json.dumps([names[i] for i in holders]))
            holder = self.client("holder", "hold", base, "--users", str(users_file), "--password", PASSWORD,
                                 "--per-user", str(plan.per_user), talk=True)
            pinger = lag = None
            try:
                # One client pings every 50 ms from before the sockets connect to after the fan-out: the worst
                # round trip in each phase is the worst stall of the loop there (issue 15: max, not p99).
                ping_token = login(base, "bench_pinger", PASSWORD)["access_token"]
                pinger = self.client("pinger-b", "ping", base, "--token", ping_token,
                                     "--interval", str(plan.fanout_ping_interval), talk=True)
                pinger.expect("ready", 30)
                lag = LagWatch(base)
                self.phases: dict[str, tuple[float, float]] = {}
                self.guarded("idle_sockets", lambda: self.idle_sockets(server, base, holder))
                if "idle_sockets" in self.errors:
                    return
                self.guarded("keepalive_wave", lambda: self.phase("keepalive_wave", holder,
                                                                          f"wave {plan.wave_s:g}", "waved"))
                self.guarded("login_storm_b", lambda: self.storm_b(base, storm_users))
                self.guarded("reconnects", lambda: self.phase("reconnects", holder, f"reconnect {plan.reconnects}",
                                                               "reconnected"))
                self.guarded("fanout", lambda: self.fanout(server, base, db, holder, pinger, lag))
            finally:
                if lag is not None:
                    lag.stop()
                for child in (pinger, holder):
                    if child is not None:
                        child.stop(timeout=20)
        finally:
            server.stop(timeout=30)

    def phase(self, name: str, holder: Child, command: str, answer: str) -> None:
        """Tell the socket holder to do something to all its sockets at once, and time it."""
        time.sleep(1)
        began = time.time()
        holder.tell(command)
        words = holder.expect(answer, 300)
        self.phases[name] = (began, time.time())
        time.sleep(1)
        self.results.setdefault("phases", {})[name] = {"reply": words, "s": round(self.phases[name][1] - began, 3)}
        print(f"   {name}: {' '.join(words)} in {self.phases[name][1] - began:.2f} s", flush=True)

    def storm_b(self, base: str, users: list[str]) -> None:
        path = self.work / "storm-b.json"
        path.write_text(json.dumps(users))
        time.sleep(1)
        storm = self.client("storm-b", "storm", base, "--users", str(path), "--password", STORM_PASSWORD).result(600)
        self.phases["login_storm"] = (storm["started"], storm["finished"])
        self.results.setdefault("phases", {})["login_storm"] = {
            "logins": storm["logins"], "statuses": storm["statuses"], "s": storm["duration_s"], "login": storm["login"]}
        print(f"   login storm: {storm['logins']} logins (bcrypt 12) in {storm['duration_s']} s"
              f" with {self.plan.sockets:,} sockets open; statuses {storm['statuses']}", flush=True)
        if storm["statuses"] != {"200": storm["logins"]}:
            raise BenchError(f"the login storm got {storm['statuses']}, not {storm['logins']} × 200")

    def idle_sockets(self, server: Child, base: str, holder: Child) -> None:
        plan = self.plan
        logged = holder.expect("logged_in", 300)
        time.sleep(1)
        before = server.rss_kib()
        connect_began = time.time()
        half = plan.sockets // 2
        holder.tell(f"connect {half}")
        first_half = holder.expect("ready", 300)
        time.sleep(3)  # let allocations settle
        middle = server.rss_kib()
        holder.tell("connect")
        ready = holder.expect("ready", 300)
        self.phases["connect"] = (connect_began, time.time())
        ready[1] = str(round(float(first_half[1]) + float(ready[1]), 3))
        time.sleep(3)
        after = server.rss_kib()
        live = metric(base, "bipupu_live_sockets")
        sockets = int(ready[0])
        self.results["idle_sockets"] = {
            "sockets": sockets, "users": plan.sockets // plan.per_user, "per_user": plan.per_user,
            "logins_s": float(logged[1]), "connect_s": float(ready[1]), "server_live_sockets": live,
            "rss_before_mib": round(before / 1024, 1), "rss_after_mib": round(after / 1024, 1),
            "rss_per_socket_kib": round((after - before) / sockets, 2) if sockets else None,
            "rss_middle_mib": round(middle / 1024, 1),
            # issue 15's measure: what the second half costs, once the first has warmed pools and caches up
            "rss_per_socket_second_half_kib": round((after - middle) / (sockets - half), 2) if sockets > half else None,
        }
        print(f"   {sockets:,} sockets in {ready[1]} s; RSS {before / 1024:.0f} -> {middle / 1024:.0f} -> {after / 1024:.0f}"
              f" MiB, {(after - before) / max(sockets, 1):.1f} KiB per socket,"
              f" {(after - middle) / max(sockets - half, 1):.1f} KiB each of the second half", flush=True)

    def fanout(self, server: Child, base: str, db: Path, holder: Child, pinger: Child, lag: LagWatch) -> None:
        plan = self.plan
        lag_max_before = metric(base, "bipupu_event_loop_lag_max_seconds")
        admin = login(base, "admin", self.admin_password)["access_token"]
        cpu = server.cpu_s()
        # Broadcast now, through the admin JSON door (POST /services/{id}/broadcast): it answers once the
        # fan-out is stored and pushed, with its own duration. No waiting for the daily scheduler.
        hello_start, hello = time.time(), self.broadcast(base, admin, HELLO, "hello, all sockets")
        hello_end = time.time()
        hello_pushed = float(holder.expect("complete", 120)[2])
        time.sleep(2)  # the hello's tail settles before the fortune starts: two windows, not one
        start, fortune = time.time(), self.broadcast(base, admin, FORTUNE, "今日宜：出门散步。Today: take a walk.")
        end = time.time()
        while True:
            words = holder.expect("complete", 300)
            if words[0] == FORTUNE:
                fortune_pushed = float(words[2])
                break
        cpu = server.cpu_s() - cpu
        time.sleep(1)
        lag_max_after = metric(base, "bipupu_event_loop_lag_max_seconds")
        last_duration = metric(base, "bipupu_last_broadcast_duration_seconds")
        last_messages = metric(base, "bipupu_last_broadcast_messages")
        pinger.close_stdin()
        pings = pinger.result(30)
        holder.close_stdin()
        held = holder.result(60)

        hello_sent, hello_s = hello["sent"], hello["duration_s"]
        sent, store_s = fortune["sent"], fortune["duration_s"]
        first_hello = min(held["first_seen"].get(HELLO, [hello_pushed]))
        first_fortune = min(held["first_seen"].get(FORTUNE, [fortune_pushed]))
        sockets = held["sockets"]
        self.results["idle_sockets"].update({
            "push": {"service": HELLO, "stored_messages": hello_sent, "store_s": round(hello_s, 3),
                     "sockets_reached": len(held["first_seen"].get(HELLO, [])),
                     "all_sockets_s": round(hello_pushed - hello_start, 3),
                     "first_to_last_socket_s": round(hello_pushed - first_hello, 3)},
            "open_at_end": held["open_at_end"], "closed_by_server": held["closed_by_server"],
        })
        window_end = max(end, fortune_pushed)
        self.results["fanout"] = {
            "subscribers": plan.subscribers, "sent": sent, "store_s": round(store_s, 3),
            "store_and_push_s": round(window_end - start, 3),
            "messages_per_s": round(sent / store_s, 1) if store_s else None,
            "online_sockets": sockets, "sockets_reached": len(held["first_seen"].get(FORTUNE, [])),
            "last_socket_push_s": round(fortune_pushed - start, 3),
            "first_to_last_socket_s": round(fortune_pushed - first_fortune, 3),
            "loop_lag_max_ms": ms(lag.worst(start, window_end)),
            "loop_lag_max_since_start_ms": {"before": ms(lag_max_before), "after": ms(lag_max_after)},
            "ping_interval_s": plan.fanout_ping_interval, "ping_during": ping_window(pings["samples"], start, window_end),
            "pings_lost": pings["lost"], "server_cpu_s": round(cpu, 1),
            "metrics_last_broadcast": {"duration_s": last_duration, "messages": last_messages},
            "via": "POST /services/{id}/broadcast",
            "socket_push_after_start": spread(held["first_seen"].get(FORTUNE, []), start),
            "ping_timeline_ms": timeline(pings["samples"], start, window_end),
            "loop_lag_timeline_ms": timeline(lag.samples, start, window_end),
        }
        if self.args.gc_log:
            self.results["fanout"]["gc_pauses_ms"] = gc_pauses(server.log, start, window_end)
        # the hello broadcast ran just before; its lag is the socket scenario's
        self.results["idle_sockets"]["push"]["loop_lag_max_ms"] = ms(lag.worst(hello_start, max(hello_end, hello_pushed)))
        push = self.results["idle_sockets"]["push"]
        push["ping_during"] = ping_window(pings["samples"], hello_start, max(hello_end, hello_pushed))
        push["socket_push_after_start"] = spread(held["first_seen"].get(HELLO, []), hello_start)
        if self.args.gc_log:
            push["gc_pauses_ms"] = gc_pauses(server.log, hello_start, max(hello_end, hello_pushed))
        self.phases["broadcast_to_sockets"] = (hello_start, max(hello_end, hello_pushed))
        self.phases["fanout"] = (start, window_end)
        everything = (min(a for a, _ in self.phases.values()), max(b for _, b in self.phases.values()))
        # A ping sent just before a phase's start, or answered just after its end, still measures it: widen a little.
        windows = {name: (a - 0.5, b + 1.0) for name, (a, b) in [*self.phases.items(), ("all", everything)]}
        stalls = {name: ping_window(pings["samples"], a, b) for name, (a, b) in windows.items()}
        for name, (a, b) in windows.items():
            stalls[name]["server_lag_max_ms"] = ms(lag.worst(a, b))
            if self.args.gc_log:
                stalls[name]["gc_pauses_ms"] = gc_pauses(server.log, a, b)
        self.results["stalls"] = {"sockets": held["sockets"], "ping_interval_s": plan.fanout_ping_interval,
                                  "pings_lost": pings["lost"], "phases": stalls}
        for name, w in stalls.items():
            print(f"   stall {name:22}: ping max {w['max_ms']} ms (p99 {w['p99_ms']}, {w['pings']} pings),"
                  f" server lag max {w['server_lag_max_ms']} ms"
                  + (f", GC pauses {len(w['gc_pauses_ms'])}, longest "
                     f"{max((p[1] for p in w['gc_pauses_ms']), default=0):.0f} ms" if self.args.gc_log else ""),
                  flush=True)
        f = self.results["fanout"]
        print(f"   {sent:,} stored in {store_s:.2f} s, stored+pushed {f['store_and_push_s']} s;"
              f" loop lag max {f['loop_lag_max_ms']} ms; ping max {f['ping_during']['max_ms']} ms", flush=True)

    @staticmethod
    def broadcast(base: str, token: str, service: str, content: str) -> dict[str, Any]:
        status, body = http("POST", f"{base}/services/{service}/broadcast", {"content": content}, token, timeout=600)
        if status != 200:
            raise BenchError(f"broadcast of {service} answered {status}: {body[:200]!r}")
        return json.loads(body)

    # the verdict

    def checks(self) -> list[dict[str, Any]]:
        r, plan = self.results, self.plan
        rows: list[dict[str, Any]] = []

        def row(scenario: str, figure: str, measured: str, target: str, ok: bool | None) -> None:
            rows.append({"scenario": scenario, "figure": figure, "measured": measured, "target": target,
                         "result": "info" if ok is None else ("pass" if ok else "FAIL")})

        def missing(key: str, scenario: str, figure: str, target: str, need: str | None = None) -> bool:
            if key in r and key not in self.errors and (need is None or need in r[key]):
                return False
            part = "b" if key in ("idle_sockets", "fanout", "stalls") else "a"
            if self.args.only not in (None, part):
                rows.append({"scenario": scenario, "figure": figure, "measured": "skipped (--only)",
                             "target": target, "result": "skip"})
                return True
            row(scenario, figure, "error: " + self.errors.get(key, "not measured"), target, False)
            return True

        if not missing("post_throughput", "1", "POST /messages throughput, server / floor", "≥ 1.0× floor"):
            p = r["post_throughput"]
            full = p["synchronous"] == "FULL"

            def throughput(where: str, c: dict[str, Any], suffix: str, label: str) -> None:
                spread = c.get(f"round_ratios{suffix}") or [c[f"ratio{suffix}"]]
                floor = c[f"floor{suffix}"]
                row("1", f"POST /messages throughput{where}, server / {label} ({p['connections']} conns, {p['tool']},"
                    f" median of {len(spread)} paired round{'s' if len(spread) != 1 else ''})",
                    f"{c[f'ratio{suffix}']:.2f}× (rounds {min(spread):.2f}–{max(spread):.2f}; median"
                    f" {c['server']['rps']:,.0f} vs {floor['rps']:,.0f} req/s)",
                    f"≥ 1.0× {label}, synchronous=FULL", c[f"ratio{suffix}"] >= 1.0 and full
                    and c["server"]["errors"] == 0)

            throughput("", p, "", "floor")
            if "ratio_uvloop" in p:
                throughput("", p, "_uvloop", "floor --uvloop")
            if p.get("pinned"):
                throughput(" on one core", p["pinned"], "", "floor")
                throughput(" on one core", p["pinned"], "_uvloop", "floor --uvloop")
            row("1", "POST latency p50 / p99, server", f"{p['server']['p50_ms']:.1f} / {p['server']['p99_ms']:.1f} ms",
                "—", None)
            row("1", "POST latency p50 / p99, floor", f"{p['floor']['p50_ms']:.1f} / {p['floor']['p99_ms']:.1f} ms",
                "—", None)
            if "floor_uvloop" in p:
                row("1", "POST latency p50 / p99, floor --uvloop",
                    f"{p['floor_uvloop']['p50_ms']:.1f} / {p['floor_uvloop']['p99_ms']:.1f} ms", "—", None)
        if not missing("push_latency", "2", "push latency POST → WS", "p99 < 10 ms"):
            p = r["push_latency"]
            row("2", f"push latency POST → WS new_message at {p['rate']:.0f}/s",
                f"p50 {p['push']['p50_ms']:.2f} / p99 {p['push']['p99_ms']:.2f} ms", "p99 < 10 ms",
                p["push"]["p99_ms"] is not None and p["push"]["p99_ms"] < 10 and p["failures"] == 0)
        if not missing("idle_sockets", "3", f"{plan.sockets:,} idle sockets held", "all held"):
            s = r["idle_sockets"]
            held = s.get("open_at_end")
            row("3", f"{plan.sockets:,} idle authenticated sockets held",
                f"{s['sockets']:,} connected, {'?' if held is None else format(held, ',')} open at the end",
                f"all {plan.sockets:,}", s["sockets"] == plan.sockets and held == plan.sockets)
            row("3", "server RSS per idle socket", f"{s['rss_per_socket_kib']:.1f} KiB", "—", None)
            second = s.get("rss_per_socket_second_half_kib")
            if second is not None:
                row("3", f"server RSS per idle socket, marginal over the second {s['sockets'] - s['sockets'] // 2:,}",
                    f"{second:.1f} KiB", "≤ 16 KiB", second <= 16)
            push = s.get("push")
            if push:
                row("3", f"push one broadcast to all {s['sockets']:,} sockets",
                    f"{push['all_sockets_s']:.2f} s ({push['sockets_reached']:,} reached)", "—", None)
        if not missing("fanout", "4", f"fan-out to {plan.subscribers:,} subscribers", "in seconds, lag < 100 ms"):
            f = r["fanout"]
            row("4", f"fan-out to {plan.subscribers:,} subscribers: stored + pushed",
                f"{f['store_and_push_s']:.1f} s (stored in {f['store_s']:.1f} s)", "in seconds (< 60 s)",
                f["sent"] == plan.subscribers and f["store_and_push_s"] < 60)
            lag, ping = f["loop_lag_max_ms"], f["ping_during"]["max_ms"]
            # Both under-read a stall (the server probes every 250 ms, the client pings every 100 ms): judge on the worse.
            worst = max(v for v in (lag, ping) if v is not None) if (lag, ping) != (None, None) else None
            row("4", "worst event-loop stall during the fan-out (server lag probe / client ping max)",
                f"{'?' if lag is None else f'{lag:.0f}'} / {'?' if ping is None else f'{ping:.0f}'} ms",
                "< 100 ms", worst is not None and worst < 100)
        if not missing("stalls", "4", "worst stall at any time with the sockets open", "< 50 ms"):
            st = r["stalls"]
            phases = st["phases"]
            worst = phases["all"]["max_ms"]
            where = max((n for n in phases if n != "all"), key=lambda n: phases[n]["max_ms"] or 0)
            row("4", f"worst ping (every {st['ping_interval_s'] * 1000:.0f} ms) at any time with {st['sockets']:,} sockets:"
                f" connect, keepalive wave, login storm, reconnects, broadcasts",
                f"{worst:.0f} ms (in {where}; server lag probe {phases['all']['server_lag_max_ms']:.0f} ms)",
                "< 50 ms", worst is not None and worst < 50)
        if not missing("login_storm", "5", "ping p99 during the login storm", "< 50 ms"):
            s = r["login_storm"]
            p99 = s["ping_during"]["p99_ms"]
            row("5", f"ping p99 during a storm of {s['logins']} logins (bcrypt 12)",
                f"{p99:.1f} ms (max {s['ping_during']['max_ms']:.1f}, {s['ping_during']['pings']} pings)",
                "< 50 ms", p99 is not None and p99 < 50 and s["statuses"] == {"200": s["logins"]})
        if not missing("startup", "6", "start-up time", "—", need="fresh_data_dir_s"):
            s = r["startup"]
            row("6", "start-up: process start → first 200 from /health (fresh data dir)",
                f"{s['fresh_data_dir_s']:.2f} s", "—", None)
            row("6", "idle RSS after start-up", f"{s['idle_rss_mib']:.1f} MiB", "≤ 45 MiB (issue 15: no more than before)",
                s["idle_rss_mib"] <= 45)
        return rows


def wait_until_up(url: str, child: Child, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not child.alive():
            raise BenchError(f"{child.name} exited with {child.proc.returncode}; see {child.log}")
        try:
            if http("GET", url, timeout=1)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.02)
    raise BenchError(f"{child.name} not up within {timeout:.0f} s")


def broadcast_zone() -> str:
    """A fixed-offset zone where it is now about noon, so that the daily send times of '23:59' stay
    hours away: the scheduler sends nothing of its own during the run (the bench broadcasts now)."""
    east = 12 - datetime.now(timezone.utc).hour  # -11 .. 12 hours east of UTC
    return "UTC" if east == 0 else f"Etc/GMT{'-' if east > 0 else '+'}{abs(east)}"  # POSIX signs are inverted


def synchronous_setting() -> str | None:
    """The server does not report its PRAGMA synchronous, so read it where it is set."""
    found = set()
    for path in (REPO / "bipupu_server").rglob("*.py"):
        found.update(m.upper() for m in re.findall(r"PRAGMA synchronous\s*=\s*(\w+)", path.read_text(), re.I))
    return found.pop() if len(found) == 1 else (",".join(sorted(found)) or None)


def machine() -> dict[str, Any]:
    def first(path: str, key: str) -> str | None:
        try:
            for line in Path(path).read_text().splitlines():
                if line.startswith(key):
                    return line.split(":", 1)[1].strip()
        except OSError:
            return None
        return None

    def version(package: str) -> str | None:
        try:
            return importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            return None

    wrk = shutil.which("wrk")
    wrk_version = None
    if wrk:
        out = subprocess.run([wrk, "-v"], capture_output=True, text=True).stdout + ""
        wrk_version = out.split(" [")[0].replace("wrk ", "").strip() or None
    mem = first("/proc/meminfo", "MemTotal")
    return {
        "cores": os.cpu_count(), "cpu": first("/proc/cpuinfo", "model name"),
        "memory_gib": round(int(mem.split()[0]) / 1024 / 1024, 1) if mem else None,
        "kernel": platform.release(), "python": platform.python_version(), "sqlite": sqlite3.sqlite_version,
        "aiohttp": version("aiohttp"), "aiosqlite": version("aiosqlite"), "orjson": version("orjson"),
        "uvloop_in_clients": version("uvloop"), "wrk": wrk_version,
    }


def filesystem(path: Path) -> str | None:
    """The type of the filesystem holding the data dirs (fsync on tmpfs would be free)."""
    best, kind = "", None
    try:
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            left, right = line.split(" - ", 1)
            mount = left.split()[4]
            if str(path).startswith(mount) and len(mount) > len(best):
                best, kind = mount, right.split()[0]
    except OSError:
        return None
    return kind


def fsync_ms(directory: Path, rounds: int = 50) -> dict[str, Any]:
    """How long an fsync of a small append takes on the data dirs' disk: the floor under any commit."""
    path = directory / "fsync-probe"
    times = []
    with open(path, "wb") as fh:
        for _ in range(rounds):
            began = time.perf_counter()
            fh.write(b"x" * 4096)
            fh.flush()
            os.fsync(fh.fileno())
            times.append(time.perf_counter() - began)
    path.unlink()
    return {"p50_ms": ms(pct(times, 50)), "p99_ms": ms(pct(times, 99))}


def commit() -> dict[str, Any]:
    def git(*argv: str) -> str | None:
        try:
            out = subprocess.run(["git", "--no-optional-locks", "-C", str(REPO), *argv], capture_output=True,
                                 text=True, timeout=10)
            return out.stdout.strip() if out.returncode == 0 else None
        except (OSError, subprocess.TimeoutExpired):
            return None

    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": git("log", "-1", "--format=%h %s"), "dirty": bool(status) if status is not None else None}


def print_table(rows: list[dict[str, Any]]) -> None:
    headers = ("#", "figure", "measured", "target", "result")
    cells = [(r["scenario"], r["figure"], _clip(r["measured"], 64), r["target"], r["result"]) for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths))
    print("\n" + line + "\n" + "-" * len(line))
    for c in cells:
        print("  ".join(v.ljust(w) for v, w in zip(c, widths)))


def markdown(report: dict[str, Any]) -> str:
    """The checks of a results file as the Markdown table docs/PERFORMANCE.md shows."""
    lines = ["| # | figure | measured | target | result |", "|---|---|---|---|---|"]
    for r in report["checks"]:
        result = {"pass": "**pass**", "FAIL": "**FAIL**"}.get(r["result"], r["result"])
        lines.append(f"| {r['scenario']} | {r['figure']} | {r['measured']} | {r['target']} | {result} |")
    m = report["machine"]
    lines.append("")
    lines.append(f"Taken {report['taken_at']} at `{report['commit']}`{' (uncommitted changes)' if report['dirty'] else ''}"
                 f" in {report['wall_s']:.0f} s; {m['cores']} cores ({m['cpu']}), {m['memory_gib']} GiB,"
                 f" Linux {m['kernel']}, data dirs on {report['data_dir_filesystem']} (fsync p50"
                 f" {report['data_dir_fsync']['p50_ms']} ms); Python {m['python']},"
                 f" SQLite {m['sqlite']}, aiohttp {m['aiohttp']}, aiosqlite {m['aiosqlite']}, wrk {m['wrk']}.")
    return "\n".join(lines)


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


def main() -> int:
    parser = argparse.ArgumentParser(description="Benchmark the Bipupu server against the floor (issue 6).")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="a setting for the bench's servers, e.g. BIPUPU_GC_KEEPER=off (repeatable)")
    parser.add_argument("--quick", action="store_true", help="a short smoke run with smaller sizes (1-2.5 min)")
    parser.add_argument("--json", type=Path, default=BENCH / "results.json", help="where to write the results")
    parser.add_argument("--floor", type=Path, default=DEFAULT_FLOOR, help="the floor server (default %(default)s)")
    parser.add_argument("--workdir", type=Path, help="parent of the temp data dirs (default: the system temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the temp data dirs and logs")
    parser.add_argument("--no-wrk", action="store_true", help="use the aiohttp load generator even if wrk is installed")
    parser.add_argument("--only", choices=("a", "b"), help="run only part A (scenarios 1, 2, 5, 6) or B (3, 4)")
    parser.add_argument("--max-minutes", type=float, default=12, help="watchdog: stop everything after this long")
    parser.add_argument("--gc-log", action="store_true",
                        help="diagnosis: run the server under bench/gcwatch.py, which logs every GC pass over 20 ms")
    parser.add_argument("--fail-on-miss", action="store_true", help="exit 3 when a target is missed")
    parser.add_argument("--markdown", type=Path, metavar="RESULTS",
                        help="print the table of a results file as Markdown (for docs/PERFORMANCE.md) and exit")
    args = parser.parse_args()
    if args.markdown:
        print(markdown(json.loads(args.markdown.read_text())))
        return 0
    if not args.floor.exists():
        parser.error(f"no floor server at {args.floor}")

    wall = time.monotonic()
    terminate_on_signals()
    watchdog = threading.Timer(args.max_minutes * 60, lambda: os.kill(os.getpid(), signal.SIGTERM))
    watchdog.daemon = True
    watchdog.start()
    fd_limit = raise_fd_limit()
    work = Path(tempfile.mkdtemp(prefix="bipupu-bench-", dir=args.workdir))
    bench = Bench(args, work)
    if fd_limit < bench.plan.sockets + 1000 and args.only != "a":
        print(f"warning: only {fd_limit} open files allowed (RLIMIT_NOFILE); {bench.plan.sockets:,} sockets need"
              " more: raise the hard limit (ulimit -Hn) or expect scenario 3 to fail", flush=True)
    failed, status = False, 0
    try:
        print(f"bipupu bench{' (quick)' if args.quick else ''}: work dir {work}, broadcast zone {bench.zone},"
              f" load by {'wrk' if shutil.which('wrk') and not args.no_wrk else 'aiohttp'}", flush=True)
        for part, run in (("a", bench.part_a), ("b", bench.part_b)):
            if args.only in (None, part):
                try:
                    run()
                except BenchError as exc:
                    bench.errors[f"part_{part}"] = str(exc)
                    print(f"part {part.upper()} FAILED: {exc}", flush=True)
    except KeyboardInterrupt as exc:
        print(f"\ninterrupted ({exc or 'Ctrl-C'}): stopping everything", flush=True)
        failed, status = True, 130
    finally:
        stop_all()
        watchdog.cancel()
    rows = bench.checks()
    report = {
        "taken_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), "quick": args.quick,
        "wall_s": round(time.monotonic() - wall, 1), **commit(), "machine": machine(),
        "data_dir_filesystem": filesystem(work), "data_dir_fsync": fsync_ms(work), "fd_limit": fd_limit, "plan": asdict(bench.plan),
        "checks": rows, "results": bench.results, "errors": bench.errors,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print_table(rows)
    print(f"\nwall time {report['wall_s']:.0f} s; results in {args.json}")
    failed = failed or bool(bench.errors)
    if args.keep or failed:
        print(f"logs and data dirs kept in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    if status:
        return status
    if bench.errors:
        return 1
    if args.fail_on_miss and any(r["result"] == "FAIL" for r in rows):
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The bench's client side, run as separate processes so they never share the server's CPU accounting.

    python bench/clients.py post    URL --token T --receiver R [--connections 32 --duration 10]
    python bench/clients.py latency URL --pairs FILE [--rate 100 --duration 10 --warmup 1]
    python bench/clients.py ping    URL --token T [--interval 0.1]          (until stdin closes)
    python bench/clients.py hold    URL --users FILE --password P [--per-user 5]
    python bench/clients.py storm   URL --users FILE --password P

Each role talks to the orchestrator (bench/run.py) by lines on stdout: progress words, and a
last line `result {json}`. Roles that wait for the orchestrator read stdin: `hold` connects on
the line `connect`; then `wave S` (every socket pings once within S seconds) and `reconnect N` (N sockets close and
open again with since); `ping` and `hold` stop and report when stdin closes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import threading
import time
from typing import Any

import aiohttp

try:  # a faster client loop leaves more of the two cores to the server; optional
    import uvloop
except ImportError:  # pragma: no cover
    uvloop = None

try:
    import orjson

    loads = orjson.loads
except ImportError:  # pragma: no cover
    loads = json.loads


def say(*words: Any) -> None:
    print(*words, flush=True)


def result(data: dict[str, Any]) -> None:
    say("result", json.dumps(data))


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of unsorted values (None when there are none)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))
    return ordered[rank - 1]


def summary_ms(seconds: list[float]) -> dict[str, Any]:
    ms = [s * 1000 for s in seconds]
    return {"n": len(ms), "p50_ms": _round(percentile(ms, 50)), "p90_ms": _round(percentile(ms, 90)),
            "p99_ms": _round(percentile(ms, 99)), "max_ms": _round(max(ms) if ms else None)}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def stdin_closed(loop: asyncio.AbstractEventLoop) -> tuple[asyncio.Event, asyncio.Queue]:
    """An event set when stdin reaches EOF, and a queue of the lines read before it."""
    closed, lines = asyncio.Event(), asyncio.Queue()

    def read() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(lines.put_nowait, line.strip())
        loop.call_soon_threadsafe(closed.set)

    threading.Thread(target=read, daemon=True).start()
    return closed, lines


def connector() -> aiohttp.TCPConnector:
    return aiohttp.TCPConnector(limit=0, force_close=False)


async def login(session: aiohttp.ClientSession, url: str, username: str, password: str) -> dict[str, Any]:
    async with session.post(f"{url}/auth/login", json={"username": username, "password": password}) as resp:
        body = await resp.json(loads=loads)
        if resp.status != 200:
            raise RuntimeError(f"login of {username} answered {resp.status}: {body}")
        return body


async def open_socket(session: aiohttp.ClientSession, url: str, token: str,
                      since: str | None = None) -> aiohttp.ClientWebSocketResponse:
    """An authenticated /ws, after its auth_ok (with `since`, the replay follows it)."""
    query = f"?since={since}" if since else ""
    ws = await session.ws_connect(f"{url}/ws{query}", headers={"Authorization": f"Bearer {token}"},
                                  compress=0, autoping=True, max_msg_size=0)
    first = await ws.receive(timeout=30)
    if first.type != aiohttp.WSMsgType.TEXT or loads(first.data).get("type") != "auth_ok":
        await ws.close()
        raise RuntimeError(f"no auth_ok on /ws: {first.type} {first.data!r}")
    return ws


# post: the aiohttp load generator, used when wrk is not installed -------------------------------

async def post_load(args: argparse.Namespace) -> None:
    body = json.dumps({"receiver_id": args.receiver, "content": "hello from the bench",
                       "msg_type": "USER_POSTCARD"}).encode()
    headers = {"Authorization": f"Bearer {args.token}", "Content-Type": "application/json"}
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    errors = 0
    async with aiohttp.ClientSession(connector=connector()) as session:
        start = time.perf_counter()
        deadline = start + args.duration

        async def sender() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                began = time.perf_counter()
                try:
                    async with session.post(f"{args.url}/messages", data=body, headers=headers,
                                            timeout=aiohttp.ClientTimeout(total=10)) as resp:
                        await resp.read()
                        statuses[resp.status] = statuses.get(resp.status, 0) + 1
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    errors += 1
                    continue
                latencies.append(time.perf_counter() - began)

        await asyncio.gather(*(sender() for _ in range(args.connections)))
        elapsed = time.perf_counter() - start
    ok = sum(n for status, n in statuses.items() if 200 <= status < 300)
    result({"tool": "aiohttp", "requests": len(latencies), "ok": ok, "duration_s": round(elapsed, 3),
            "rps": round(len(latencies) / elapsed, 1), "errors": errors, "non_2xx": len(latencies) - ok,
            "statuses": statuses, **summary_ms(latencies)})


# latency: POST -> WebSocket new_message at a steady rate -----------------------------------------

async def push_latency(args: argparse.Namespace) -> None:
    with open(args.pairs) as fh:
        pairs = json.load(fh)  # [{"sender_token", "receiver_id", "receiver_token"}]
    arrived: dict[str, float] = {}
    waiting: dict[str, asyncio.Future] = {}
    async with aiohttp.ClientSession(connector=connector()) as session:
        sockets = [await open_socket(session, args.url, p["receiver_token"]) for p in pairs]

        async def read(ws: aiohttp.ClientWebSocketResponse) -> None:
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                now = time.perf_counter()
                data = loads(msg.data)
                if data.get("type") == "new_message":
                    key = data["payload"]["content"]
                    arrived[key] = now
                    fut = waiting.pop(key, None)
                    if fut is not None and not fut.done():
                        fut.set_result(None)

        readers = [asyncio.create_task(read(ws)) for ws in sockets]
        total = int(args.rate * (args.duration + args.warmup))
        push, response, failures, statuses = [], [], 0, {}

        async def send(i: int, at: float) -> None:
            nonlocal failures
            pair = pairs[i % len(pairs)]
            key = f"latency probe {i}"
            waiting[key] = asyncio.get_running_loop().create_future()
            began = time.perf_counter()
            try:
                async with session.post(f"{args.url}/messages",
                                        json={"receiver_id": pair["receiver_id"], "content": key},
                                        headers={"Authorization": f"Bearer {pair['sender_token']}"},
                                        timeout=aiohttp.ClientTimeout(total=10)) as resp:
                    await resp.read()
                    statuses[resp.status] = statuses.get(resp.status, 0) + 1
                answered = time.perf_counter()
                if key not in arrived:
                    await asyncio.wait_for(waiting[key], 5)
            except (aiohttp.ClientError, asyncio.TimeoutError):
                failures += 1
                return
            finally:
                waiting.pop(key, None)
            if at >= warm_until:
                push.append(arrived[key] - began)
                response.append(answered - began)

        start = time.perf_counter()
        warm_until = start + args.warmup
        tasks = []
        for i in range(total):
            at = start + i / args.rate
            delay = at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(send(i, at)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
        for task in readers:
            task.cancel()
        for ws in sockets:
            await ws.close()
    result({"rate": args.rate, "sent": total, "achieved_rate": round(total / elapsed, 1), "failures": failures,
            "statuses": statuses, "push": summary_ms(push), "response": summary_ms(response)})


# ping: one open socket, a ping every interval, until stdin closes --------------------------------

async def pinger(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    closed, _ = stdin_closed(loop)
    samples: list[tuple[float, float]] = []  # (wall time sent, round trip s)
    lost = 0
    async with aiohttp.ClientSession(connector=connector()) as session:
        ws = await open_socket(session, args.url, args.token)
        say("ready")
        deadline = time.perf_counter() + args.max_duration
        next_at = time.perf_counter()
        while not closed.is_set() and time.perf_counter() < deadline:
            wall, began = time.time(), time.perf_counter()
            await ws.send_str('{"type":"ping"}')
            try:
                while True:  # skip anything that is not our pong (nothing else is expected)
                    msg = await ws.receive(timeout=10)
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        raise ConnectionError(f"socket ended: {msg.type} {msg.data!r}")
                    if loads(msg.data).get("type") == "pong":
                        break
            except asyncio.TimeoutError:
                lost += 1
            else:
                samples.append((wall, time.perf_counter() - began))
            next_at = max(next_at + args.interval, time.perf_counter())
            await asyncio.sleep(next_at - time.perf_counter())
        await ws.close()
    result({"interval_s": args.interval, "lost": lost, "samples": [[round(w, 4), round(r, 6)] for w, r in samples]})


# hold: thousands of idle authenticated sockets, and when a push reaches them ---------------------

async def hold(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    closed, lines = stdin_closed(loop)
    with open(args.users) as fh:
        usernames = json.load(fh)
    sockets: list[aiohttp.ClientWebSocketResponse] = []
    first_seen: dict[str, list[float]] = {}  # sender_id -> wall time each socket first got one from it
    seen: list[set[str]] = []
    ended: dict[str, int] = {}  # close code -> sockets the server closed
    async with aiohttp.ClientSession(connector=connector()) as session:
        limit = asyncio.Semaphore(args.concurrency)
        began = time.perf_counter()

        async def sign_in(name: str) -> str:
            async with limit:
                return (await login(session, args.url, name, args.password))["access_token"]

        tokens = await asyncio.gather(*(sign_in(name) for name in usernames))
        say("logged_in", len(tokens), round(time.perf_counter() - began, 3))
        while not (command := await lines.get()).startswith("connect"):
            pass

        def watch(index: int, ws: aiohttp.ClientWebSocketResponse):
            async def read() -> None:
                async for msg in ws:
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        break
                    now = time.time()
                    data = loads(msg.data)
                    if data.get("type") != "new_message":
                        continue
                    if newest[0] is None or data["payload"]["id"] > newest[0]:
                        newest[0] = data["payload"]["id"]
                    sender = data["payload"]["sender_id"]
                    if sender in seen[index]:
                        continue
                    seen[index].add(sender)
                    times = first_seen.setdefault(sender, [])
                    times.append(now)
                    if len(times) == len(sockets):
                        say("complete", sender, len(times), repr(now))
                if not closed.is_set():
                    code = str(ws.close_code)
                    ended[code] = ended.get(code, 0) + 1
            return read

        async def connect(token: str) -> None:
            async with limit:
                ws = await open_socket(session, args.url, token)
            sockets.append(ws)
            owners.append(token)
            seen.append(set())
            readers.append(asyncio.create_task(watch(len(sockets) - 1, ws)()))

        async def reconnect(index: int) -> None:
            """Like an App back from a tunnel: close, open again with `since` (the newest card it has)."""
            readers[index].cancel()
            await sockets[index].close()
            async with limit:
                ws = await open_socket(session, args.url, owners[index], newest[0])
            sockets[index] = ws
            readers[index] = asyncio.create_task(watch(index, ws)())

        owners: list[str] = []
        newest: list[str | None] = [None]  # the newest message id any socket was pushed

        readers: list[asyncio.Task] = []
        todo = [token for token in tokens for _ in range(args.per_user)]
        while True:  # "connect" opens all the sockets; "connect N", the next N of them
            words = command.split()
            count = int(words[1]) if len(words) > 1 else len(todo)
            batch, todo = todo[:count], todo[count:]
            began = time.perf_counter()
            await asyncio.gather(*(connect(token) for token in batch))
            say("ready", len(sockets), round(time.perf_counter() - began, 3))
            if not todo:
                break
            while not (command := await lines.get()).startswith("connect"):
                pass

        async def keep_alive() -> None:
            """Like an App: each socket pings every 30 s (spread over the period), or the server's
            90-second idle rule would close them while the bench waits for the broadcast."""
            tick = 0
            while True:
                await asyncio.sleep(1)
                for i in range(tick % 30, len(sockets), 30):
                    if not sockets[i].closed:
                        await sockets[i].send_str('{"type":"ping"}')
                tick += 1

        pinging = asyncio.create_task(keep_alive())
        # Commands on stdin: "wave S" (every socket pings once within S s), "reconnect N" (N sockets, with since).
        while not closed.is_set():
            getting = asyncio.ensure_future(lines.get())
            await asyncio.wait([getting, asyncio.ensure_future(closed.wait())], return_when=asyncio.FIRST_COMPLETED)
            if not getting.done():
                getting.cancel()
                break
            words = (getting.result() or "").split()
            began = time.perf_counter()
            if words[:1] == ["wave"]:  # "wave S": every socket pings once, spread over S seconds
                spread = float(words[1]) if len(words) > 1 else 0.0
                step = max(1, len(sockets) // 100)
                for start in range(0, len(sockets), step):  # 100 slices, spread evenly
                    await asyncio.gather(*(ws.send_str('{"type":"ping"}') for ws in sockets[start:start + step]
                                           if not ws.closed), return_exceptions=True)
                    await asyncio.sleep(spread / 100)
                say("waved", len(sockets), round(time.perf_counter() - began, 3))
            elif words[:1] == ["reconnect"]:
                count = min(int(words[1]), len(sockets))
                outcomes = await asyncio.gather(*(reconnect(i) for i in range(count)), return_exceptions=True)
                failed = sum(isinstance(o, BaseException) for o in outcomes)
                say("reconnected", count - failed, failed, round(time.perf_counter() - began, 3))
        pinging.cancel()
        open_now = sum(not ws.closed for ws in sockets)
        for task in readers:
            task.cancel()
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    result({"sockets": len(sockets), "open_at_end": open_now, "closed_by_server": ended,
            "first_seen": {sender: [round(t, 4) for t in times] for sender, times in first_seen.items()}})


# storm: many concurrent logins -------------------------------------------------------------------

async def storm(args: argparse.Namespace) -> None:
    with open(args.users) as fh:
        usernames = json.load(fh)
    durations, statuses = [], {}
    async with aiohttp.ClientSession(connector=connector()) as session:
        async def one(name: str) -> None:
            began = time.perf_counter()
            async with session.post(f"{args.url}/auth/login", json={"username": name, "password": args.password},
                                    timeout=aiohttp.ClientTimeout(total=120)) as resp:
                await resp.read()
                statuses[resp.status] = statuses.get(resp.status, 0) + 1
            durations.append(time.perf_counter() - began)

        started = time.time()
        await asyncio.gather(*(one(name) for name in usernames))
        finished = time.time()
    result({"logins": len(usernames), "statuses": statuses, "started": started, "finished": finished,
            "duration_s": round(finished - started, 3), "login": summary_ms(durations)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    roles = parser.add_subparsers(dest="role", required=True)
    p = roles.add_parser("post")
    p.add_argument("url")
    p.add_argument("--token", required=True)
    p.add_argument("--receiver", required=True)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--duration", type=float, default=10)
    p = roles.add_parser("latency")
    p.add_argument("url")
    p.add_argument("--pairs", required=True)
    p.add_argument("--rate", type=float, default=100)
    p.add_argument("--duration", type=float, default=10)
    p.add_argument("--warmup", type=float, default=1)
    p = roles.add_parser("ping")
    p.add_argument("url")
    p.add_argument("--token", required=True)
    p.add_argument("--interval", type=float, default=0.1)
    p.add_argument("--max-duration", type=float, default=600)
    p = roles.add_parser("hold")
    p.add_argument("url")
    p.add_argument("--users", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--per-user", type=int, default=5)
    p.add_argument("--concurrency", type=int, default=64)
    p = roles.add_parser("storm")
    p.add_argument("url")
    p.add_argument("--users", required=True)
    p.add_argument("--password", required=True)
    args = parser.parse_args()
    role = {"post": post_load, "latency": push_latency, "ping": pinger, "hold": hold, "storm": storm}[args.role]
    (uvloop.run if uvloop is not None else asyncio.run)(role(args))


if __name__ == "__main__":
    main()

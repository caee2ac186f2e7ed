"""Prometheus metrics of one server: a registry of its own (no globals), rendered on /metrics."""

from __future__ import annotations

import asyncio
import time
from typing import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from .hub import Hub
from .relay import STATES as BLE_STATES

LAG_PROBE_S = 0.25


class Metrics:
    """What an operator graphs: sockets, messages, HTTP statuses, broadcasts, BLE link, loop lag."""

    def __init__(self, hub: Hub, last_broadcast: Callable[[], tuple[float, int]]):
        self.registry = registry = CollectorRegistry(auto_describe=True)
        self.messages = Counter("bipupu_messages", "Messages stored since start, by type.", ["msg_type"],
                                registry=registry)
        self.http = Counter("bipupu_http_responses", "HTTP responses since start, by status.", ["status"],
                            registry=registry)
        Gauge("bipupu_live_sockets", "Authenticated WebSockets open now.", registry=registry).set_function(
            lambda: len(hub))
        Gauge("bipupu_last_broadcast_duration_seconds", "How long the last fan-out took.",
              registry=registry).set_function(lambda: last_broadcast()[0])
        Gauge("bipupu_last_broadcast_messages", "How many messages the last fan-out stored.",
              registry=registry).set_function(lambda: last_broadcast()[1])
        # A gauge per state, labelled `state` (prometheus_client's Enum would name the label after the metric).
        self.ble = Gauge("bipupu_ble_relay", "State of the BLE relay link: 1 for the current state.", ["state"],
                         registry=registry)
        self.loop_lag = Gauge("bipupu_event_loop_lag_seconds", "Event-loop lag at the last probe.", registry=registry)
        self.loop_lag_max = Gauge("bipupu_event_loop_lag_max_seconds", "Worst event-loop lag seen since start.",
                                  registry=registry)
        for msg_type in ("USER_POSTCARD", "VOICE_TRANSCRIPT", "COSMIC_BROADCAST"):
            self.messages.labels(msg_type)  # present at 0 from the start
        self.ble_state("off")

    def ble_state(self, state: str) -> None:
        """The relay's link is now in `state` (one of BLE_STATES)."""
        if state not in BLE_STATES:
            raise ValueError(f"unknown BLE relay state {state!r}")
        for each in BLE_STATES:
            self.ble.labels(each).set(1 if each == state else 0)

    def stored(self, msg_type: str, count: int = 1) -> None:
        self.messages.labels(msg_type).inc(count)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    async def watch_loop(self) -> None:
        """Forever: how late a short sleep wakes up is how long the loop was blocked."""
        worst = 0.0
        while True:
            started = time.perf_counter()
            await asyncio.sleep(LAG_PROBE_S)
            lag = max(0.0, time.perf_counter() - started - LAG_PROBE_S)
            worst = max(worst, lag)
            self.loop_lag.set(lag)
            self.loop_lag_max.set(worst)

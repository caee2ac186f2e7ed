"""In-memory sliding-window limits (login, registration), judged by the injected clock."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from .clock import Clock

MAX_KEYS = 100_000  # bounds memory under a flood of distinct keys; the oldest keys are forgotten


@dataclass(frozen=True)
class Limit:
    """At most `count` events per `window_s` seconds for one key."""

    count: int
    window_s: float


class SlidingWindow:
    """At most `limit.count` events per key within any `limit.window_s` seconds."""

    def __init__(self, limit: Limit, clock: Clock, *, enabled: bool = True):
        self.limit = limit
        self._clock = clock
        self.enabled = enabled
        self._events: dict[str, deque[float]] = {}

    def retry_after(self, key: str) -> float | None:
        """Seconds until one more event is allowed for `key`, or None if it is allowed now."""
        if not self.enabled:
            return None
        events = self._prune(key)
        if events is None or len(events) < self.limit.count:
            return None
        return events[0] + self.limit.window_s - self._clock.monotonic()

    def add(self, key: str) -> None:
        if not self.enabled:
            return
        events = self._prune(key)
        if events is None:
            if len(self._events) >= MAX_KEYS:
                del self._events[next(iter(self._events))]
            events = self._events[key] = deque()
        events.append(self._clock.monotonic())

    def reset(self, key: str) -> None:
        self._events.pop(key, None)

    def _prune(self, key: str) -> deque[float] | None:
        events = self._events.get(key)
        if events is None:
            return None
        horizon = self._clock.monotonic() - self.limit.window_s
        while events and events[0] <= horizon:
            events.popleft()
        if not events:
            del self._events[key]
            return None
        return events


class TokenBucket:
    """Bursts of up to `burst` events per key, refilled one every `refill_s` seconds."""

    def __init__(self, burst: int, refill_s: float, clock: Clock, *, enabled: bool = True):
        self.burst = burst
        self.refill_s = refill_s
        self._clock = clock
        self.enabled = enabled
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at monotonic)

    def take(self, key: str) -> float | None:
        """Spend one token; None if there was one, else the seconds until there will be."""
        if not self.enabled:
            return None
        now = self._clock.monotonic()
        tokens, at = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) / self.refill_s)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) * self.refill_s
        if len(self._buckets) >= MAX_KEYS and key not in self._buckets:
            del self._buckets[next(iter(self._buckets))]
        self._buckets[key] = (tokens - 1.0, now)
        return None

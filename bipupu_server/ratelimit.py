"""In-memory sliding-window limits (login, registration), judged by the injected clock."""

from __future__ import annotations

from collections import deque

from .clock import Clock
from .config import Limit

MAX_KEYS = 100_000  # bounds memory under a flood of distinct keys; the oldest keys are forgotten


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

    def hit(self, key: str) -> float | None:
        """Count one event if allowed; otherwise return the seconds to wait."""
        wait = self.retry_after(key)
        if wait is None:
            self.add(key)
        return wait

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

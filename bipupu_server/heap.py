"""Keeping CPython's cyclic garbage collector from stalling the event loop (issue 15, docs/PERFORMANCE.md).

The collector stops the world to walk every tracked object of the generation it collects. With
10,000 open sockets that is about a million objects, and a full pass took 0.3-0.8 s: every phone
froze at once. The keeper bounds each pass to what arrived lately:

- every `tick_s` (100 ms) it collects what is not frozen (the objects that survived since the last
  tick, so their own cycles are freed) and freezes the survivors (`gc.freeze()`, an O(1) list
  splice). No collection, automatic or ours, walks more than about one tick's survivors;
- frozen objects are never collected. One that becomes cyclic garbage after it was frozen stays
  until the daily thaw (`thaw_at`, 04:00 in BIPUPU_TIMEZONE, when phones sleep): unfreeze and one
  full collection, timed and logged. Under uvloop a closed socket leaves no cyclic garbage
  (measured), so the thaw has little to find; what it found is in the log line.

The collector is one per process: run.py's server manages it (`BIPUPU_GC_KEEPER=on`, the default);
an app built by other code (the tests) leaves it alone unless its Config asks. While a keeper runs,
`managed()` is true and the broadcaster does not freeze and unfreeze around a fan-out itself.
"""

from __future__ import annotations

import gc
import logging
import time
from datetime import datetime, timedelta, tzinfo
from datetime import time as clock_time

from .clock import Clock

log = logging.getLogger(__name__)

TICK_S = 0.1
THAW_AT = clock_time(4, 0)

_keepers = 0  # keepers running in this process (one, in a server; the collector is process-wide)


def managed() -> bool:
    """Whether a keeper is freezing the heap, so that nobody else should freeze or unfreeze it."""
    return _keepers > 0


class HeapKeeper:
    def __init__(self, clock: Clock, zone: tzinfo, *, tick_s: float = TICK_S, thaw_at: clock_time = THAW_AT):
        self.clock, self.zone, self.tick_s, self.thaw_at = clock, zone, tick_s, thaw_at
        self.ticks = 0
        self.last_thaw: tuple[int, float] | None = None  # (objects found, seconds) of the last thaw

    def next_thaw(self, now: float) -> float:
        """The first `thaw_at` in the server's zone strictly after `now` (epoch seconds)."""
        local = datetime.fromtimestamp(now, self.zone)
        at = local.replace(hour=self.thaw_at.hour, minute=self.thaw_at.minute, second=0, microsecond=0)
        if at <= local:
            at = (at + timedelta(days=1, hours=1)).replace(hour=self.thaw_at.hour, minute=self.thaw_at.minute)
        return at.timestamp()

    def tick(self) -> None:
        """Collect what survived since the last tick, then freeze what is still alive of it."""
        gc.collect()
        gc.freeze()
        self.ticks += 1

    def thaw(self) -> int:
        """Give every frozen object back to the collector for one full pass, then freeze again; the garbage found."""
        started = time.perf_counter()
        gc.unfreeze()
        found = gc.collect()
        gc.freeze()
        self.last_thaw = (found, time.perf_counter() - started)
        log.info("daily heap thaw: %d unreachable objects freed in %.0f ms, %d objects frozen",
                 found, self.last_thaw[1] * 1000, gc.get_freeze_count())
        return found

    async def run(self) -> None:
        global _keepers
        _keepers += 1
        try:
            gc.collect()
            gc.freeze()  # what start-up made (modules, classes, the app): never garbage
            thaw_due = self.next_thaw(self.clock.time())
            while True:
                await self.clock.sleep(self.tick_s)
                if self.clock.time() >= thaw_due:
                    self.thaw()
                    thaw_due = self.next_thaw(self.clock.time())
                else:
                    self.tick()
        finally:
            _keepers -= 1
            if _keepers == 0:
                gc.unfreeze()  # the process's collector as it found it

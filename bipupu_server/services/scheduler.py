"""The daily broadcast scheduler: an asyncio task that sends each service's broadcast when due."""

from __future__ import annotations

import logging
import sqlite3
from datetime import datetime, timedelta, tzinfo

from ..clock import Clock
from ..store import services as store
from ..store.db import Database, DatabaseError
from .broadcast import Broadcaster
from .catalog import send_instant

log = logging.getLogger(__name__)

MAX_SLEEP_S = 60.0  # wake at least once a minute, so a wall-clock jump is noticed soon


class Scheduler:
    """Each tick sends today's broadcast of every daily service whose send time has passed.

    Idempotent by construction: what was sent is in the database (daily_deliveries), so a
    restart, a clock jump or two ticks at once never send twice; a box that was off at send
    time sends the day's broadcast on its first tick after start-up.
    """

    def __init__(self, db: Database, broadcaster: Broadcaster, clock: Clock, zone: tzinfo):
        self.db = db
        self.broadcaster = broadcaster
        self.clock = clock
        self.zone = zone

    async def tick(self) -> int:
        """Send whatever is due now; returns how many messages went out."""
        now = self.clock.time()
        today = datetime.fromtimestamp(now, self.zone).date()
        sent = 0
        for service in await self.db.read(store.all_services):
            if not service["is_active"] or not _is_daily(service):
                continue
            if send_instant(service, today, self.zone).timestamp() <= now:
                sent += await self.broadcaster.run_daily(service, today)
        return sent

    async def seconds_to_next(self) -> float:
        now = self.clock.time()
        today = datetime.fromtimestamp(now, self.zone).date()
        waits = [MAX_SLEEP_S]
        for service in await self.db.read(store.all_services):
            if service["is_active"] and _is_daily(service):
                for day in (today, today + timedelta(days=1)):
                    due = send_instant(service, day, self.zone).timestamp() - now
                    if due > 0:
                        waits.append(due)
                        break
        return max(0.05, min(waits))

    async def run(self) -> None:
        """Forever: tick, then sleep until the next send time (at most a minute)."""
        while True:
            try:
                await self.tick()
                delay = await self.seconds_to_next()
            except (sqlite3.Error, DatabaseError) as exc:
                log.warning("scheduler: database unavailable, will retry: %s", exc)
                delay = 5.0
            except Exception:  # a bug must not end daily broadcasts for good
                log.exception("scheduler tick failed; will retry")
                delay = 5.0
            await self.clock.sleep(delay)


def _is_daily(service: dict) -> bool:
    return service["kind"] == "fortune" or (service["kind"] == "custom" and service["daily_content"] is not None)

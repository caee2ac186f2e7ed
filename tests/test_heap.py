"""heap.py: the keeper that freezes survivors so no garbage-collector pass walks the whole heap (issue 15).

The collector is process-wide, so these tests look at the real one (gc.get_freeze_count) and give it
back unfrozen; time is the injected clock, so ticks and the daily thaw come when the test says.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import weakref
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from bipupu_server import heap
from bipupu_server.config import from_environment
from bipupu_server.heap import HeapKeeper
from tests.conftest import until

SHANGHAI = ZoneInfo("Asia/Shanghai")


class Cycle:
    def __init__(self):
        self.me = self


@pytest.fixture(autouse=True)
def unfrozen():
    gc.unfreeze()
    yield
    gc.unfreeze()


def visible() -> set[int]:
    """The objects the collector walks: those of its three generations, not the frozen ones."""
    return {id(o) for o in gc.get_objects()}


def test_a_tick_frees_young_cycles_and_freezes_the_survivors(clock):
    keeper = HeapKeeper(clock, timezone.utc)
    kept, doomed = Cycle(), Cycle()
    gone = weakref.ref(doomed)
    del doomed  # a cycle: only the collector can free it
    assert gone() is not None
    keeper.tick()
    assert gone() is None  # freed by the tick's collection
    assert id(kept) not in visible()  # frozen: no pass walks it any more
    newer = Cycle()  # the next tick sees only what came since
    assert id(newer) in visible()
    keeper.tick()
    assert id(newer) not in visible() and gc.get_freeze_count() > 0


def test_a_cycle_that_dies_frozen_waits_for_the_thaw_and_the_thaw_frees_it(clock, caplog):
    caplog.set_level(logging.INFO, logger="bipupu_server.heap")
    keeper = HeapKeeper(clock, timezone.utc)
    late = Cycle()
    gone = weakref.ref(late)
    keeper.tick()  # frozen while alive
    del late  # now garbage, but frozen: no collection finds it
    gc.collect()
    assert gone() is not None
    found = keeper.thaw()
    assert gone() is None and found >= 1
    assert gc.get_freeze_count() > 0  # frozen again after the pass
    [line] = [r.getMessage() for r in caplog.records if "thaw" in r.getMessage()]
    assert f"{found} unreachable objects freed" in line


def test_the_thaw_is_at_four_in_the_servers_zone(clock):
    keeper = HeapKeeper(clock, SHANGHAI)
    at = lambda *a: datetime(*a, tzinfo=SHANGHAI).timestamp()  # noqa: E731
    assert keeper.next_thaw(at(2026, 12, 3, 3, 59)) == at(2026, 12, 3, 4, 0)
    assert keeper.next_thaw(at(2026, 12, 3, 4, 0)) == at(2026, 12, 4, 4, 0)
    assert keeper.next_thaw(at(2026, 12, 3, 23, 0)) == at(2026, 12, 4, 4, 0)
    berlin = ZoneInfo("Europe/Berlin")  # across a DST change: still 04:00 local
    assert HeapKeeper(clock, berlin).next_thaw(datetime(2026, 3, 28, 12, tzinfo=berlin).timestamp()) == \
        datetime(2026, 3, 29, 4, tzinfo=berlin).timestamp()


async def test_the_keeper_ticks_on_its_clock_thaws_when_due_and_unfreezes_when_it_stops(clock):
    clock.set_wall(datetime(2026, 12, 3, 3, 59, 59, tzinfo=SHANGHAI).timestamp())
    keeper = HeapKeeper(clock, SHANGHAI, tick_s=0.1)
    task = asyncio.create_task(keeper.run())
    await until(lambda: heap.managed(), "the keeper running")
    assert gc.get_freeze_count() > 0  # start-up's objects frozen at once
    clock.advance(0.1)
    await until(lambda: keeper.ticks == 1, "a tick")
    assert keeper.last_thaw is None
    clock.advance(1.0)  # past 04:00
    await until(lambda: keeper.last_thaw is not None, "the thaw")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not heap.managed() and gc.get_freeze_count() == 0


def test_the_keeper_is_run_pys_default_and_can_be_switched_off():
    assert from_environment({}).gc_keeper is True
    assert from_environment({"BIPUPU_GC_KEEPER": "off"}).gc_keeper is False
    assert from_environment({}).access_log is False and from_environment({"BIPUPU_ACCESS_LOG": "on"}).access_log


async def test_a_server_with_the_keeper_serves_and_broadcasts_and_gives_the_heap_back(make_client, clock):
    client = await make_client(gc_keeper=True)
    await until(lambda: heap.managed(), "the keeper running")
    resp = await client.get("/health")
    assert resp.status == 200
    await client.close()
    assert not heap.managed() and gc.get_freeze_count() == 0

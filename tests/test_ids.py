"""MessageIds: monotonic UUIDv7 strings whose string order is the order they were issued."""

from __future__ import annotations

import uuid

import pytest

from bipupu_server.ids import MessageIds, floor_id, is_message_id
from tests.conftest import FakeClock

YEAR_S = 365 * 86400


def ms_of(message_id: str) -> int:
    """The 48-bit unix_ts_ms field of a UUIDv7."""
    return uuid.UUID(message_id).int >> 80


def uuid7(ms: int, rand_a: int, rand_b: int) -> str:
    """Build a UUIDv7 by hand (RFC 9562 §5.7 layout), independent of the code under test."""
    return str(uuid.UUID(int=ms << 80 | 0x7 << 76 | rand_a << 64 | 0b10 << 62 | rand_b))


def clock_ms(clock: FakeClock) -> int:
    return int(clock.time() * 1000)


def test_ten_thousand_ids_in_one_millisecond_are_strictly_increasing_and_unique():
    ids = MessageIds(FakeClock())
    issued = [ids.next() for _ in range(10_000)]
    assert all(a < b for a, b in zip(issued, issued[1:]))
    assert len(set(issued)) == 10_000


def test_ids_stay_increasing_while_the_clock_ticks_by_fractions_of_a_millisecond():
    clock = FakeClock()
    ids = MessageIds(clock)
    issued = []
    for _ in range(2_000):
        issued.append(ids.next())
        clock.advance(0.0003)
    assert issued == sorted(issued)
    assert len(set(issued)) == len(issued)


def test_every_id_is_a_canonical_version_7_rfc_variant_uuid():
    ids = MessageIds(FakeClock())
    for _ in range(200):
        text = ids.next()
        parsed = uuid.UUID(text)
        assert parsed.version == 7
        assert parsed.variant == uuid.RFC_4122
        assert str(parsed) == text  # lowercase, dashed, 36 characters
        assert is_message_id(text)


def test_ids_keep_increasing_when_the_wall_clock_jumps_back():
    clock = FakeClock()
    ids = MessageIds(clock)
    before = [ids.next() for _ in range(5)]
    clock.set_wall(clock.wall - 3600)
    after = [ids.next() for _ in range(5)]
    assert before + after == sorted(before + after)
    assert len(set(before + after)) == 10
    assert min(after) > max(before)
    # The clock is behind, so the ids keep the last millisecond rather than following it back.
    assert all(ms_of(i) == ms_of(before[-1]) for i in after)


def test_ids_follow_the_clock_again_once_it_passes_the_last_issued_millisecond():
    clock = FakeClock()
    ids = MessageIds(clock)
    first = ids.next()
    clock.set_wall(clock.wall - 10)
    behind = ids.next()
    clock.set_wall(clock.wall + 20)
    ahead = ids.next()
    assert first < behind < ahead
    assert ms_of(ahead) == clock_ms(clock)


def test_seeded_with_a_newest_id_from_the_future_new_ids_still_come_after_it():
    clock = FakeClock()
    future_ms = clock_ms(clock) + YEAR_S * 1000
    newest = uuid7(future_ms, 0x123, 0x2_0000_0000_0000)
    ids = MessageIds(clock, newest=newest)
    issued = [ids.next() for _ in range(100)]
    assert issued[0] > newest
    assert issued == sorted(issued) and len(set(issued)) == 100
    assert all(ms_of(i) == future_ms for i in issued)


def test_seeded_with_an_older_id_new_ids_use_the_clock():
    clock = FakeClock()
    newest = uuid7(clock_ms(clock) - 86_400_000, 0xFFF, (1 << 62) - 1)
    issued = MessageIds(clock, newest=newest).next()
    assert issued > newest
    assert ms_of(issued) == clock_ms(clock)


def test_a_full_random_field_rolls_over_into_the_next_millisecond():
    clock = FakeClock()
    ms = clock_ms(clock)
    newest = uuid7(ms, 0xFFF, (1 << 62) - 1)  # the largest id of that millisecond
    issued = MessageIds(clock, newest=newest).next()
    assert issued > newest
    assert ms_of(issued) == ms + 1
    assert uuid.UUID(issued).version == 7 and uuid.UUID(issued).variant == uuid.RFC_4122


def test_the_timestamp_field_is_the_clocks_millisecond_when_the_clock_moves_forward():
    clock = FakeClock()
    ids = MessageIds(clock)
    for step in (0.001, 0.002, 0.5, 1.0, 60.0, 86400.0):
        clock.advance(step)
        assert ms_of(ids.next()) == clock_ms(clock)


@pytest.mark.parametrize("step_s", [0.0, 0.0004, 0.001, 1.0])
def test_floor_id_is_at_most_every_id_issued_at_or_after_its_millisecond(step_s):
    clock = FakeClock()
    ids = MessageIds(clock)
    earlier = ids.next()
    clock.advance(0.001)
    floor_ms = clock_ms(clock)
    floor = floor_id(floor_ms)
    later = []
    for _ in range(500):
        later.append(ids.next())
        clock.advance(step_s)
    assert all(floor <= i for i in later)
    assert earlier < floor  # issued in the millisecond before: below the floor
    assert is_message_id(floor)
    assert ms_of(floor) == floor_ms


def test_floor_id_is_the_smallest_version_7_id_of_its_millisecond():
    ms = 1_790_000_000_123
    floor = floor_id(ms)
    assert floor == uuid7(ms, 0, 0)
    assert uuid.UUID(floor).version == 7
    assert floor_id(ms - 1) < floor < floor_id(ms + 1)
    assert uuid7(ms - 1, 0xFFF, (1 << 62) - 1) < floor


@pytest.mark.parametrize("text", [
    "0190f3a2-7b4c-7d2e-8f00-123456789abc",
    "00000000-0000-0000-0000-000000000000",
    str(uuid.uuid4()),
])
def test_is_message_id_accepts_canonical_lowercase_uuids(text):
    assert is_message_id(text)


@pytest.mark.parametrize("text", [
    "0190F3A2-7B4C-7D2E-8F00-123456789ABC",  # upper case
    "0190f3a2-7b4c-7d2e-8f00-123456789Abc",  # one upper-case letter
    "0190f3a27b4c7d2e8f00123456789abc",  # no dashes
    "{0190f3a2-7b4c-7d2e-8f00-123456789abc}",
    "urn:uuid:0190f3a2-7b4c-7d2e-8f00-123456789abc",
    "0190f3a2-7b4c-7d2e-8f00-123456789ab",  # one digit short
    "0190f3a2-7b4c-7d2e-8f00-123456789abcd",
    "0190f3a-27b4c-7d2e-8f00-123456789abc",  # dashes in the wrong places
    "0190f3a2-7b4c-7d2e-8f00-123456789abg",
    " 0190f3a2-7b4c-7d2e-8f00-123456789ab",
    "",
    "latest",
    "00000002",
    "' OR 1=1 --",
])
def test_is_message_id_refuses_anything_but_a_canonical_lowercase_uuid(text):
    assert not is_message_id(text)

"""Message ids: UUIDv7 strings whose order is the order the server accepted the messages."""

from __future__ import annotations

import re
import secrets
import uuid

from .clock import Clock

RANDOM_BITS = 74  # rand_a (12) + rand_b (62) of RFC 9562 UUIDv7
RANDOM_MAX = (1 << RANDOM_BITS) - 1
MAX_STEP = 1 << 32  # per-id increment inside one millisecond: random, so ids stay unguessable
# A canonical lowercase UUID: what `before`, `since` and paths accept as a message id.
MESSAGE_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class MessageIds:
    """Monotonic UUIDv7 (RFC 9562 §6.2, method 2): never goes backwards, even if the wall clock does.

    Seeded with the newest stored id at start-up, so a restart with a clock set in the past
    (a Raspberry Pi without RTC) still issues ids after every existing one.
    """

    def __init__(self, clock: Clock, newest: str | None = None):
        self._clock = clock
        self._ms, self._rand = (-1, 0) if newest is None else _split(newest)

    def next(self) -> str:
        now_ms = int(self._clock.time() * 1000)
        if now_ms > self._ms:
            self._ms, self._rand = now_ms, secrets.randbits(RANDOM_BITS - 1)  # headroom for increments
        else:  # same millisecond, or the clock went back: keep the last time and count up
            self._rand += 1 + secrets.randbelow(MAX_STEP)
            if self._rand > RANDOM_MAX:
                self._ms, self._rand = self._ms + 1, secrets.randbits(RANDOM_BITS - 1)
        return _join(self._ms, self._rand)


def _join(ms: int, rand: int) -> str:
    rand_a, rand_b = rand >> 62, rand & ((1 << 62) - 1)
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | rand_a << 64 | 0b10 << 62 | rand_b
    return str(uuid.UUID(int=value))


def _split(text: str) -> tuple[int, int]:
    value = uuid.UUID(text).int
    return value >> 80, ((value >> 64) & 0xFFF) << 62 | (value & ((1 << 62) - 1))


def is_message_id(text: str) -> bool:
    """A canonical lowercase UUID string (what `before`, `since` and paths accept)."""
    return MESSAGE_ID.fullmatch(text) is not None


def floor_id(ms: int) -> str:
    """The smallest UUIDv7 string of a millisecond: ids >= it were accepted at or after that time."""
    return _join(ms, 0)

"""One connection to the pupu device: frames out in chunks, answers in by notify, one frame in flight.

The exchange of docs/ble-protocol.md ("The exchange"): write a frame's chunks with response, wait for
the answer echoing its seq; no answer or BAD_CRC → the same bytes again, up to SEND_TRIES in all,
then the link is given up (LinkLost) and the relay reconnects; BUSY → wait and resend without
using a try, up to BUSY_MAX_S; a refusal for good (TOO_LONG, UNKNOWN_VERSION, MALFORMED,
UNKNOWN_TYPE) is returned, and the caller skips the card.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from bleak import BleakClient
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.exc import BleakError

from . import frames
from .frames import Ack, Frame, Nack, Status

WRITE_TIMEOUT_S = 10.0  # one write with response; BlueZ normally answers in milliseconds


class LinkLost(Exception):
    """The connection is gone or no longer answers; the message says why, for the relay's state."""


@dataclass(frozen=True)
class Timing:
    """How long the relay waits for what; the defaults are the protocol's (frames.py), tests shorten them."""

    answer_timeout_s: float = frames.ANSWER_TIMEOUT_S
    send_tries: int = frames.SEND_TRIES
    busy_delay_s: float = frames.BUSY_DELAY_S
    busy_max_s: float = frames.BUSY_MAX_S
    backoff_first_s: float = 2.0  # the first wait before connecting again; doubles up to backoff_max_s
    backoff_max_s: float = 60.0


@dataclass(frozen=True)
class Sent:
    """What became of one write of a frame, for the relay's log of last frames."""

    kind: str  # SHOW_CARD, TIME, …
    seq: int
    size: int  # bytes of the whole frame
    outcome: str  # acknowledged, bad_crc, no_answer, busy, TOO_LONG…, link_lost
    message_id: str | None = None


_LOST = object()  # put in the answer queue when the link drops: whoever waits wakes at once


class Link:
    """A connected client with the pupu's two characteristics found and notifications on."""

    def __init__(self, client: BleakClient, write: BleakGATTCharacteristic, timing: Timing,
                 record: Callable[[Sent], None]):
        self.client = client
        self.write_char = write
        self.write_size = write.max_write_without_response_size or frames.CHUNK_DEFAULT
        self.timing = timing
        self._record = record
        self._seq = 0
        self._answers: asyncio.Queue[Ack | Nack | object] = asyncio.Queue()
        self._reassembler = frames.Reassembler()
        self.lost: str | None = None  # why the link is gone, once it is

    @classmethod
    async def open(cls, client: BleakClient, *, service_uuid: str, write_uuid: str, notify_uuid: str,
                   timing: Timing, record: Callable[[Sent], None]) -> Link:
        """Find the write and notify characteristics and subscribe; LinkLost if the device is not a pupu."""
        try:
            services = client.services
            write, notify = services.get_characteristic(write_uuid), services.get_characteristic(notify_uuid)
            if services.get_service(service_uuid) is None or write is None or notify is None:
                raise LinkLost(f"the device has no service {service_uuid} with characteristics {write_uuid} and "
                               f"{notify_uuid}: is it a pupu? (BIPUPU_BLE_SERVICE_UUID, _WRITE_UUID, _NOTIFY_UUID)")
            link = cls(client, write, timing, record)
            await client.start_notify(notify, link._notified)
        except (BleakError, EOFError, OSError) as exc:
            raise LinkLost(f"could not subscribe to the device's answers: {exc}") from None
        return link

    def dropped(self, reason: str = "the device went away") -> None:
        """The link is gone (bleak's disconnected callback): a waiting exchange ends at once."""
        if self.lost is None:
            self.lost = reason
            self._answers.put_nowait(_LOST)

    def _notified(self, _characteristic: BleakGATTCharacteristic, data: bytearray) -> None:
        for result in self._reassembler.feed(bytes(data)):
            if isinstance(result, (Ack, Nack)):  # the relay ignores any other frame, and damaged answers
                self._answers.put_nowait(result)

    async def send(self, make: Callable[[int], Frame], message_id: str | None = None) -> Status:
        """Send one frame until the device takes or refuses it; Status.OK for an ACK, else the refusal.

        `make(seq)` builds the frame; ValueError (a card that cannot be encoded) propagates before any write.
        """
        seq, self._seq = self._seq, (self._seq + 1) & 0xFFFF
        frame = make(seq)
        data = frames.encode(frame)
        kind = frame.kind.name
        tries, busy_since = 0, None
        loop = asyncio.get_running_loop()
        while True:
            tries += 1
            await self._write(data)
            answer = await self._answer(seq)
            if isinstance(answer, Ack):
                self._record(Sent(kind, seq, len(data), "acknowledged", message_id))
                return Status.OK
            if answer is None or answer.status == Status.BAD_CRC:
                self._record(Sent(kind, seq, len(data), "no_answer" if answer is None else "bad_crc", message_id))
                if tries >= self.timing.send_tries:
                    raise LinkLost(f"no acknowledgement after {tries} tries")
                continue
            if answer.status == Status.BUSY:
                self._record(Sent(kind, seq, len(data), "busy", message_id))
                busy_since = busy_since if busy_since is not None else loop.time()
                if loop.time() - busy_since >= self.timing.busy_max_s:
                    raise LinkLost(f"the device was busy for {self.timing.busy_max_s:.0f} s")
                tries -= 1  # the device is alive: a busy answer uses up no try
                await self._wait(self.timing.busy_delay_s)
                continue
            self._record(Sent(kind, seq, len(data), answer.status.name, message_id))
            return answer.status

    async def _write(self, data: bytes) -> None:
        for chunk in frames.chunks(data, self.write_size):
            if self.lost is not None:
                raise LinkLost(self.lost)
            try:
                async with asyncio.timeout(WRITE_TIMEOUT_S):
                    await self.client.write_gatt_char(self.write_char, chunk, response=True)
            except (BleakError, EOFError, OSError, TimeoutError) as exc:
                self.dropped(f"a write failed: {exc or type(exc).__name__}")
                raise LinkLost(self.lost) from None

    async def _answer(self, seq: int) -> Ack | Nack | None:
        """The answer echoing `seq`, or None after the timeout; an answer to an older frame is stale."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timing.answer_timeout_s
        while True:
            try:
                async with asyncio.timeout_at(deadline):
                    answer = await self._answers.get()
            except TimeoutError:
                return None
            if answer is _LOST:
                self._answers.put_nowait(_LOST)  # it stays lost for whoever asks next
                raise LinkLost(self.lost)
            assert isinstance(answer, (Ack, Nack))
            if answer.seq == seq:
                return answer

    async def _wait(self, seconds: float) -> None:
        """Sleep, but wake (LinkLost) at once if the link drops meanwhile."""
        try:
            async with asyncio.timeout(seconds):
                while True:
                    if await self._answers.get() is _LOST:
                        self._answers.put_nowait(_LOST)
                        raise LinkLost(self.lost)
        except TimeoutError:
            return

"""A fake pupu device for tests: a bleak backend whose far side answers like the firmware (docs/ble-protocol.md).

The relay is run against it through bleak's real `BleakClient`; nothing of the relay is mocked:

    pupu = FakePupu()
    client = await establish_connection(BleakClientWithServiceCache, pupu.ble_device, "pupu",
                                        disconnected_callback=..., max_attempts=1, backend=pupu.backend)
    ...
    await pupu.wait_shown(1)

The device's state outlives connections: `shown`, `received`, `answers`, `writes`, `connections`, the
ring of the last 8 card ids (RAM: `power_off` forgets it). Fault knobs act on what comes next:
`corrupt`, `stay_silent`, `answer_busy`, `drop_mid_frame`; `power_off`/`power_on` act now.

Like BlueZ: answers come by notification from the event loop (one may arrive before the write that
caused it returns); the disconnected callback fires on every disconnect, the client's own too; after
a drop `client.services` raises and writes raise BleakError. An absent device (off, or already
connected to another client, so not advertising) fails `connect` at once with the TimeoutError a real
connect gives after its timeout: establish_connection turns it into BleakNotFoundError after 0.25 s
per attempt.
"""

from __future__ import annotations

import asyncio
import copy
from collections import deque
from collections.abc import Callable
from typing import Any, ClassVar

from bleak.args import SizedBuffer
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient, NotifyCallback
from bleak.backends.descriptor import BleakGATTDescriptor
from bleak.backends.device import BLEDevice
from bleak.backends.service import BleakGATTService, BleakGATTServiceCollection
from bleak.exc import BleakError, BleakGATTProtocolError, BleakGATTProtocolErrorCode
from bleak.uuids import normalize_uuid_str

from bipupu_server.relay import frames
from bipupu_server.relay.frames import Ack, FrameError, Nack, ShowCard, Status, TooLong

NUS_SERVICE = "6E400001-B5A3-F393-E0A9-E50E24DCCA9E"
NUS_RX = "6E400002-B5A3-F393-E0A9-E50E24DCCA9E"  # the relay writes here
NUS_TX = "6E400003-B5A3-F393-E0A9-E50E24DCCA9E"  # the device notifies here
REMEMBERED_IDS = 8  # the ring of card ids a repeat is known by (docs/ble-protocol.md, "Repeats")
WAIT_S = 2.0


class FakePupu:
    """One pupu device: GATT (Nordic UART by default), the firmware's answers, and fault knobs for tests."""

    def __init__(self, address: str = "AA:BB:CC:DD:EE:01", name: str = "pupu-1", *, write_size: int = 20,
                 service_uuid: str = NUS_SERVICE, write_uuid: str = NUS_RX, notify_uuid: str = NUS_TX,
                 max_payload: int = frames.MAX_PAYLOAD_BYTES):
        self.address = address
        self.name = name
        self.write_size = write_size
        self.service_uuid = normalize_uuid_str(service_uuid)
        self.write_uuid = normalize_uuid_str(write_uuid)
        self.notify_uuid = normalize_uuid_str(notify_uuid)
        self.powered = True
        self.shown: list[ShowCard] = []  # cards on the screen, in order, each message id once
        self.received: list[frames.Frame] = []  # every frame that decoded, repeats and refused ones too
        self.answers: list[Ack | Nack] = []  # every answer given (delivered only while notifications are on)
        self.writes: list[bytes] = []  # every write the device took, as it came
        self.connections = 0
        self.backend: type[FakePupuClient] = type("FakePupuBackend", (FakePupuClient,), {"pupu": self})
        self._reassembler = frames.Reassembler(max_payload)
        self._remembered: deque[str] = deque(maxlen=REMEMBERED_IDS)
        self._link: FakePupuClient | None = None
        self._corrupt = self._silent = self._busy = 0
        self._drop = False
        self._waiters: set[asyncio.Future[None]] = set()

    @property
    def ble_device(self) -> BLEDevice:
        """What a scan would find; no BlueZ "path" in details, so bleak-retry-connector skips D-Bus."""
        return BLEDevice(self.address, self.name, {"source": "fake-pupu"})

    @property
    def connected(self) -> bool:
        return self._link is not None

    @property
    def notifying(self) -> bool:
        """Whether the connected client has notifications on (the relay is ready for answers)."""
        return self._link is not None and self._link._notify is not None

    # Fault knobs

    def corrupt(self, n: int = 1) -> None:
        """Flip a bit of the last byte of each of the next n frames as it arrives: the device answers NACK BAD_CRC."""
        self._corrupt += n

    def stay_silent(self, n: int = 1) -> None:
        """Act on each of the next n frames that decode but lose the answer (an ACK that never arrives)."""
        self._silent += n

    def answer_busy(self, n: int = 1) -> None:
        """Refuse each of the next n frames that decode with NACK BUSY, without acting on them."""
        self._busy += n

    def drop_mid_frame(self) -> None:
        """Drop the link on the next write: it is taken and the link goes, or, if it would end a frame, it fails."""
        self._drop = True

    def power_off(self) -> None:
        """Switch the device off now: the link drops, connects fail, and the RAM ring of card ids is lost."""
        self.powered = False
        self._remembered.clear()
        if self._link is not None:
            self._lose_link(self._link)
        self._changed()

    def power_on(self) -> None:
        self.powered = True
        self._changed()

    # Waits, bounded, without sleeping

    async def wait_for(self, ready: Callable[[], bool], timeout: float = WAIT_S, what: str = "the condition") -> None:
        """Return once ready() is true, looking again after each change of the device; TimeoutError after timeout."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                while not ready():
                    waiter = loop.create_future()
                    self._waiters.add(waiter)
                    try:
                        await waiter
                    finally:
                        self._waiters.discard(waiter)
        except TimeoutError:
            raise TimeoutError(f"{self.name}: {what} not within {timeout} s") from None

    async def wait_shown(self, n: int = 1, timeout: float = WAIT_S) -> list[ShowCard]:
        await self.wait_for(lambda: len(self.shown) >= n, timeout, f"{n} cards shown (have {len(self.shown)})")
        return self.shown

    async def wait_connected(self, timeout: float = WAIT_S) -> None:
        await self.wait_for(lambda: self.connected, timeout, "a connection")

    async def wait_disconnected(self, timeout: float = WAIT_S) -> None:
        await self.wait_for(lambda: not self.connected, timeout, "a disconnect")

    # The device's side, called by its backend

    def _changed(self) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _accept(self, client: FakePupuClient) -> None:
        if client.address.upper() != self.address.upper():
            raise TimeoutError(f"nothing answers at {client.address} (the fake is {self.address})")
        if not self.powered:
            raise TimeoutError(f"{self.name} ({self.address}) does not answer: powered off")
        if self._link is not None:
            raise TimeoutError(f"{self.name} ({self.address}) does not answer: connected to another client")
        self._link = client
        self.connections += 1
        self._reassembler.reset()  # seq numbers and partial frames start afresh on each connection
        self._changed()

    def _end_link(self, client: FakePupuClient) -> None:
        client._connected = False
        client._notify = None
        client.services = None
        if self._link is client:
            self._link = None
        self._changed()

    def _lose_link(self, client: FakePupuClient) -> None:
        """The link drops under the client: it hears of it from the event loop, as from BlueZ's signal."""
        self._end_link(client)
        if client._disconnected_callback is not None:
            asyncio.get_running_loop().call_soon(self._call_back, client._disconnected_callback)

    def _call_back(self, callback: Callable[[], None]) -> None:
        """Run a client's callback, then wake the waits, whose condition may be about what it did."""
        try:
            callback()
        finally:
            self._changed()

    def _receive(self, client: FakePupuClient, data: bytes) -> None:
        if self._drop:
            self._drop = False
            if _ends_frame(copy.deepcopy(self._reassembler).feed(data)):
                self._lose_link(client)  # the frame's end never arrives, nor the write's response
                raise BleakError("Not connected")
            self._take(client, data)
            self._lose_link(client)
            return
        self._take(client, data)

    def _take(self, client: FakePupuClient, data: bytes) -> None:
        self.writes.append(data)
        if not self._corrupt:
            results = self._reassembler.feed(data)
        else:  # byte by byte, to find the byte that ends a frame (and flip it: the CRC no longer matches)
            results = []
            for byte in data:
                if self._corrupt and _ends_frame(copy.deepcopy(self._reassembler).feed(bytes([byte]))):
                    self._corrupt -= 1
                    byte ^= 0x01
                results += self._reassembler.feed(bytes([byte]))
        for result in results:
            self._act(client, result)
        self._changed()

    def _act(self, client: FakePupuClient, result: frames.Frame | FrameError) -> None:
        if isinstance(result, FrameError):
            if result.seq is not None:  # no seq read, no answer: the relay's timeout resends
                self._answer(client, Nack(seq=result.seq, status=result.status))
            return
        self.received.append(result)
        if isinstance(result, (Ack, Nack)):  # answers are the device's to give: it ignores them
            return
        if self._silent:
            self._silent -= 1
            self._perform(result)
            return
        if self._busy:
            self._busy -= 1
            self._answer(client, Nack(seq=result.seq, status=Status.BUSY))
            return
        self._perform(result)
        self._answer(client, Ack(seq=result.seq))

    def _perform(self, frame: frames.Frame) -> None:
        if isinstance(frame, ShowCard) and frame.message_id not in self._remembered:
            self._remembered.append(frame.message_id)
            self.shown.append(frame)

    def _answer(self, client: FakePupuClient, answer: Ack | Nack) -> None:
        self.answers.append(answer)
        if client._notify is None:  # notifications off: the firmware has nowhere to send it
            return
        data = bytearray(frames.encode(answer))
        asyncio.get_running_loop().call_soon(self._deliver, client, data)

    def _deliver(self, client: FakePupuClient, data: bytearray) -> None:
        if client._connected and client._notify is not None:  # a notification in flight dies with the link
            self._call_back(lambda: client._notify(data))

    def _services(self, requested: set[str] | None) -> BleakGATTServiceCollection:
        collection = BleakGATTServiceCollection()
        if requested is not None and self.service_uuid not in requested:
            return collection
        service = BleakGATTService(None, 0x0010, self.service_uuid)
        collection.add_service(service)
        size = lambda: self.write_size  # noqa: E731 - bleak asks for a callable, read at each access
        collection.add_characteristic(BleakGATTCharacteristic(None, 0x0011, self.write_uuid, ["write"], size, service))
        collection.add_characteristic(BleakGATTCharacteristic(None, 0x0013, self.notify_uuid, ["notify"], size,
                                                              service))
        return collection


def _ends_frame(results: list[frames.Frame | FrameError]) -> bool:
    return any(not isinstance(result, TooLong) for result in results)


class FakePupuClient(BaseBleakClient):
    """The bleak backend of a FakePupu; `FakePupu.backend` is a subclass bound to one device."""

    pupu: ClassVar[FakePupu]

    def __init__(self, address_or_ble_device: BLEDevice | str, *, disconnected_callback: Callable[[], None] | None,
                 timeout: float, services: set[str] | None = None, **kwargs: Any):
        super().__init__(address_or_ble_device, disconnected_callback=disconnected_callback, timeout=timeout)
        self._requested = services
        self._connected = False
        self._notify: NotifyCallback | None = None

    @property
    def name(self) -> str:
        return self.pupu.name

    @property
    def mtu_size(self) -> int:
        return self.pupu.write_size + 3  # ATT_MTU: a write carries MTU - 3 bytes

    @property
    def is_connected(self) -> bool:
        return self._connected

    async def connect(self, pair: bool, **kwargs: Any) -> None:
        if self._connected:
            raise BleakError("Client is already connected")
        await asyncio.sleep(0)
        self.pupu._accept(self)
        self._connected = True
        self.services = self.pupu._services(self._requested)

    async def disconnect(self) -> None:
        if not self._connected:
            return
        await asyncio.sleep(0)
        self.pupu._end_link(self)
        if self._disconnected_callback is not None:  # BlueZ calls it for a disconnect we asked for too
            self.pupu._call_back(self._disconnected_callback)

    async def pair(self, *args: Any, **kwargs: Any) -> None:
        """Nothing to do: the pupu needs no pairing."""

    async def unpair(self) -> None:
        """Nothing to do: the pupu needs no pairing."""

    async def read_gatt_char(self, characteristic: BleakGATTCharacteristic, *, use_cached: bool = False,
                             **kwargs: Any) -> bytearray:
        raise BleakGATTProtocolError(BleakGATTProtocolErrorCode.READ_NOT_PERMITTED)

    async def read_gatt_descriptor(self, descriptor: BleakGATTDescriptor, *, use_cached: bool = False,
                                   **kwargs: Any) -> bytearray:
        raise BleakGATTProtocolError(BleakGATTProtocolErrorCode.READ_NOT_PERMITTED)

    async def write_gatt_char(self, characteristic: BleakGATTCharacteristic, data: SizedBuffer,
                              response: bool) -> None:
        if not self._connected:
            raise BleakError("Not connected")
        if characteristic.uuid != self.pupu.write_uuid or not response:  # RX takes writes with response only
            raise BleakGATTProtocolError(BleakGATTProtocolErrorCode.WRITE_NOT_PERMITTED)
        if len(data) > self.pupu.write_size:  # no long (prepared) writes: one write fits one ATT PDU
            raise BleakGATTProtocolError(BleakGATTProtocolErrorCode.INVALID_ATTRIBUTE_VALUE_LENGTH)
        await asyncio.sleep(0)  # the request on its way
        if not self._connected:
            raise BleakError("Not connected")
        self.pupu._receive(self, bytes(data))
        await asyncio.sleep(0)  # the response on its way back: an answer notified meanwhile comes first

    async def write_gatt_descriptor(self, descriptor: BleakGATTDescriptor, data: SizedBuffer) -> None:
        raise BleakGATTProtocolError(BleakGATTProtocolErrorCode.WRITE_NOT_PERMITTED)

    async def start_notify(self, characteristic: BleakGATTCharacteristic, callback: NotifyCallback,
                           **kwargs: Any) -> None:
        if not self._connected:
            raise BleakError("Not connected")
        if characteristic.uuid != self.pupu.notify_uuid:
            raise BleakError(f"Characteristic {characteristic.uuid} does not notify")
        await asyncio.sleep(0)  # the CCCD write
        if not self._connected:
            raise BleakError("Not connected")
        self._notify = callback
        self.pupu._changed()

    async def stop_notify(self, characteristic: BleakGATTCharacteristic) -> None:
        if not self._connected:
            raise BleakError("Not connected")
        if characteristic.uuid == self.pupu.notify_uuid:
            self._notify = None

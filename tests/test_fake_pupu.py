"""tests/fake_pupu.py, the fake pupu device, through bleak's real BleakClient and bleak-retry-connector."""

from __future__ import annotations

import asyncio
import time

import pytest
from bleak import BleakClient
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.exc import BleakError, BleakGATTProtocolError, BleakGATTProtocolErrorCode
from bleak_retry_connector import BleakClientWithServiceCache, BleakNotFoundError, establish_connection

from bipupu_server.relay import frames
from bipupu_server.relay.frames import Ack, Clear, Nack, Ping, ShowCard, Status, Time
from tests.fake_pupu import NUS_RX, NUS_SERVICE, NUS_TX, FakePupu

QUIET = 0.2  # how long a test listens for an answer that must not come
MESSAGE_ID = "019c47be-9c3b-7048-b456-789abcdef012"
OTHER_ID = "019c4847-f007-78d1-9678-9abcdef01234"


def card(seq: int, message_id: str = MESSAGE_ID, text: str = "晚安 🌙, see you tomorrow") -> ShowCard:
    return ShowCard(seq=seq, message_id=message_id, msg_type="USER_POSTCARD", sender="00000002", text=text)


class Central:
    """A BleakClient on the fake with notifications on: what the relay holds, minus the relay."""

    def __init__(self, pupu: FakePupu, client: BleakClient):
        self.pupu = pupu
        self.client = client
        self.answers: asyncio.Queue[frames.Frame] = asyncio.Queue()
        self.notified: list[tuple[BleakGATTCharacteristic, object]] = []
        self.drops = 0

    @classmethod
    async def connect(cls, pupu: FakePupu, **kwargs) -> Central:
        central = cls(pupu, BleakClient(pupu.ble_device, backend=pupu.backend,
                                        disconnected_callback=lambda _client: central._dropped(), **kwargs))
        await central.client.connect()
        await central.client.start_notify(pupu.notify_uuid, central._notified)
        return central

    def _notified(self, characteristic: BleakGATTCharacteristic, data: bytearray) -> None:
        self.notified.append((characteristic, data))
        self.answers.put_nowait(frames.decode(data))

    def _dropped(self) -> None:
        self.drops += 1

    @property
    def write_size(self) -> int:
        return self.client.services.get_characteristic(self.pupu.write_uuid).max_write_without_response_size

    async def send(self, frame: frames.Frame | bytes) -> None:
        data = frame if isinstance(frame, bytes) else frames.encode(frame)
        for chunk in frames.chunks(data, self.write_size):
            await self.client.write_gatt_char(self.pupu.write_uuid, chunk, response=True)

    async def answer(self) -> frames.Frame:
        return await asyncio.wait_for(self.answers.get(), 2.0)

    async def silence(self) -> None:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(self.answers.get(), QUIET)


@pytest.fixture
def pupu() -> FakePupu:
    return FakePupu()


@pytest.mark.parametrize("size", [20, 180, 512])
async def test_the_services_are_the_nordic_uart_with_the_write_size(size: int):
    pupu = FakePupu(write_size=size)
    client = BleakClient(pupu.ble_device, backend=pupu.backend)
    await client.connect()
    assert client.is_connected and client.name == "pupu-1" and client.address == "AA:BB:CC:DD:EE:01"
    assert client.mtu_size == size + 3
    service = client.services.get_service(NUS_SERVICE)
    assert service is not None and service.uuid == NUS_SERVICE.lower()
    rx, tx = service.get_characteristic(NUS_RX), service.get_characteristic(NUS_TX)
    assert rx.properties == ["write"] and tx.properties == ["notify"]
    assert rx.max_write_without_response_size == size
    assert client.services.get_characteristic(NUS_RX.lower()) is rx
    await client.disconnect()
    assert not client.is_connected


async def test_other_uuids_can_be_chosen():
    pupu = FakePupu(service_uuid="0000fff0-0000-1000-8000-00805f9b34fb", write_uuid="fff1", notify_uuid="fff2")
    central = await Central.connect(pupu)
    assert central.client.services.get_service(NUS_SERVICE) is None
    assert central.client.services.get_characteristic("0000fff1-0000-1000-8000-00805f9b34fb") is not None
    await central.send(Ping(seq=0))
    assert await central.answer() == Ack(seq=0)


async def test_a_card_in_chunks_is_acked_and_shown(pupu: FakePupu):
    central = await Central.connect(pupu)
    data = frames.encode(card(0))
    await central.send(data)
    assert not central.answers.empty()  # the answer may come before the last write returns, as on BlueZ
    assert await central.answer() == Ack(seq=0)
    assert await pupu.wait_shown(1) == [card(0)]
    assert pupu.received == [card(0)] and pupu.answers == [Ack(seq=0)]
    assert [len(chunk) for chunk in pupu.writes] == [len(chunk) for chunk in frames.chunks(data, 20)]
    assert b"".join(pupu.writes) == data and max(map(len, pupu.writes)) == 20
    characteristic, value = central.notified[0]
    assert characteristic.uuid == NUS_TX.lower() and type(value) is bytearray


async def test_a_repeated_card_is_acked_but_shown_once(pupu: FakePupu):
    central = await Central.connect(pupu)
    await central.send(card(0))
    await central.send(card(1))
    await central.send(card(2, OTHER_ID, "second"))
    assert [await central.answer() for _ in range(3)] == [Ack(seq=0), Ack(seq=1), Ack(seq=2)]
    assert [shown.message_id for shown in pupu.shown] == [MESSAGE_ID, OTHER_ID]
    assert len(pupu.received) == 3


async def test_the_other_frames_are_acked_and_answers_or_garbage_get_none(pupu: FakePupu):
    central = await Central.connect(pupu)
    await central.send(b"\x00\x01\x02")  # no start byte: dropped unanswered
    await central.send(Ack(seq=7))  # the device ignores answers
    for frame in (Ping(seq=0), Clear(seq=1), Time(seq=2, unix_s=1_770_730_200, tz_offset_min=480)):
        await central.send(frame)
    assert [await central.answer() for _ in range(3)] == [Ack(seq=0), Ack(seq=1), Ack(seq=2)]
    assert pupu.received[0] == Ack(seq=7) and pupu.shown == []


async def test_a_malformed_frame_is_answered_with_its_status(pupu: FakePupu):
    central = await Central.connect(pupu)
    await central.send(bytes.fromhex("B7 15 00 05 00 00 FF 10"))  # type 0x5, reserved
    assert await central.answer() == Nack(seq=5, status=Status.UNKNOWN_TYPE)


async def test_corrupt_is_answered_bad_crc_and_the_resend_is_acked(pupu: FakePupu):
    central = await Central.connect(pupu)
    data = frames.encode(card(0))
    assert frames.START not in data[1:]  # else the device rightly looks for a frame inside the damaged one
    pupu.corrupt()
    await central.send(data)
    assert await central.answer() == Nack(seq=0, status=Status.BAD_CRC)
    assert pupu.shown == [] and pupu.received == []
    await central.send(data)
    assert await central.answer() == Ack(seq=0)
    assert pupu.shown == [card(0)]


async def test_corrupt_counts_frames(pupu: FakePupu):
    central = await Central.connect(pupu)
    pupu.corrupt(2)
    for seq in range(3):
        await central.send(Ping(seq=seq))
    assert [await central.answer() for _ in range(3)] == [Nack(seq=0, status=Status.BAD_CRC),
                                                         Nack(seq=1, status=Status.BAD_CRC), Ack(seq=2)]


async def test_stay_silent_acts_but_the_answer_never_comes(pupu: FakePupu):
    central = await Central.connect(pupu)
    pupu.stay_silent()
    await central.send(card(0))
    await central.silence()
    assert pupu.shown == [card(0)]  # the lost ACK: the resend is a repeat
    await central.send(card(0))
    assert await central.answer() == Ack(seq=0)
    assert pupu.shown == [card(0)] and len(pupu.received) == 2


async def test_answer_busy_refuses_without_showing(pupu: FakePupu):
    central = await Central.connect(pupu)
    pupu.answer_busy(2)
    for _ in range(3):
        await central.send(card(0))
    assert [await central.answer() for _ in range(3)] == [Nack(seq=0, status=Status.BUSY)] * 2 + [Ack(seq=0)]
    assert pupu.shown == [card(0)]


async def test_drop_mid_frame_drops_the_link_after_part_of_a_card(pupu: FakePupu):
    central = await Central.connect(pupu)
    pupu.drop_mid_frame()
    data = frames.encode(card(0))
    first, second, *_ = frames.chunks(data, 20)
    await central.client.write_gatt_char(NUS_RX, first, response=True)  # taken: its response got out
    assert not central.client.is_connected and not pupu.connected
    await pupu.wait_for(lambda: central.drops == 1, what="the disconnected callback")
    with pytest.raises(BleakError):
        await central.client.write_gatt_char(NUS_RX, second, response=True)
    with pytest.raises(BleakError):
        central.client.services  # noqa: B018 - bleak forgets the services with the link
    assert pupu.writes == [first] and pupu.received == [] and pupu.shown == []
    await central.client.disconnect()  # a no-op now: no second callback
    assert central.drops == 1


async def test_drop_mid_frame_fails_a_write_that_would_end_the_frame(pupu: FakePupu):
    central = await Central.connect(pupu)
    pupu.drop_mid_frame()
    with pytest.raises(BleakError):
        await central.send(Ping(seq=0))
    await pupu.wait_disconnected()
    await asyncio.sleep(0)  # the callback comes from the loop
    assert central.drops == 1 and pupu.received == [] and pupu.writes == []


async def test_the_callback_fires_for_an_asked_disconnect_too(pupu: FakePupu):
    central = await Central.connect(pupu)
    await central.client.disconnect()
    assert central.drops == 1 and not pupu.connected


async def test_power_off_drops_the_link_and_connects_fail_until_power_on(pupu: FakePupu):
    central = await Central.connect(pupu)
    await central.send(card(0))
    assert await central.answer() == Ack(seq=0)
    pupu.power_off()
    await pupu.wait_for(lambda: central.drops == 1, what="the disconnected callback")
    assert not central.client.is_connected
    with pytest.raises(TimeoutError):
        await BleakClient(pupu.ble_device, backend=pupu.backend).connect()
    with pytest.raises(TimeoutError):
        await central.client.connect()
    pupu.power_on()
    again = await Central.connect(pupu)
    assert pupu.connections == 2
    await again.send(card(0))
    assert await again.answer() == Ack(seq=0)
    assert pupu.shown == [card(0), card(0)]  # the ring of ids was in RAM


async def test_each_connection_starts_with_a_fresh_reassembler(pupu: FakePupu):
    central = await Central.connect(pupu)
    await central.client.write_gatt_char(NUS_RX, frames.encode(card(5))[:20], response=True)
    await central.client.disconnect()
    await central.client.connect()  # the same client may connect again
    await central.client.start_notify(NUS_TX, central._notified)
    await central.send(card(0))
    assert await central.answer() == Ack(seq=0)
    assert pupu.shown == [card(0)] and pupu.connections == 2


async def test_a_second_client_cannot_connect_while_one_is_connected(pupu: FakePupu):
    await Central.connect(pupu)
    with pytest.raises(TimeoutError):
        await BleakClient(pupu.ble_device, backend=pupu.backend).connect()


async def test_writes_must_fit_and_have_a_response(pupu: FakePupu):
    central = await Central.connect(pupu)
    with pytest.raises(BleakGATTProtocolError) as error:
        await central.client.write_gatt_char(NUS_RX, bytes(21), response=True)
    assert error.value.code is BleakGATTProtocolErrorCode.INVALID_ATTRIBUTE_VALUE_LENGTH
    with pytest.raises(BleakGATTProtocolError):
        await central.client.write_gatt_char(NUS_RX, bytes(8), response=False)
    with pytest.raises(BleakGATTProtocolError):
        await central.client.write_gatt_char(NUS_TX, bytes(8), response=True)
    assert pupu.writes == [] and central.client.is_connected


async def test_no_answer_reaches_a_client_without_notifications(pupu: FakePupu):
    client = BleakClient(pupu.ble_device, backend=pupu.backend)
    await client.connect()
    assert not pupu.notifying
    await client.write_gatt_char(NUS_RX, frames.encode(Ping(seq=0)), response=True)
    assert pupu.answers == [Ack(seq=0)]  # given, but with nowhere to go


async def test_waits_time_out_with_what_they_waited_for(pupu: FakePupu):
    with pytest.raises(TimeoutError, match="1 cards shown"):
        await pupu.wait_shown(1, timeout=0.05)


async def test_establish_connection_connects_with_the_fake_as_backend(pupu: FakePupu):
    drops: list[BleakClient] = []
    client = await establish_connection(BleakClientWithServiceCache, pupu.ble_device, "pupu",
                                        disconnected_callback=drops.append, max_attempts=1, backend=pupu.backend)
    assert isinstance(client, BleakClientWithServiceCache) and client.is_connected
    answers: asyncio.Queue[frames.Frame] = asyncio.Queue()
    await client.start_notify(NUS_TX, lambda _char, data: answers.put_nowait(frames.decode(data)))
    for chunk in frames.chunks(frames.encode(card(0)), 20):
        await client.write_gatt_char(NUS_RX, chunk, response=True)
    assert await asyncio.wait_for(answers.get(), 2.0) == Ack(seq=0)
    pupu.power_off()
    await pupu.wait_for(lambda: drops == [client], what="the disconnected callback")


async def test_establish_connection_to_a_device_that_is_off_fails_fast(pupu: FakePupu):
    pupu.power_off()
    started = time.monotonic()
    with pytest.raises(BleakNotFoundError):
        await establish_connection(BleakClientWithServiceCache, pupu.ble_device, "pupu", max_attempts=1,
                                   backend=pupu.backend)
    assert time.monotonic() - started < 1.0  # one attempt and its 0.25 s backoff
    pupu.power_on()
    client = await establish_connection(BleakClientWithServiceCache, pupu.ble_device, "pupu", max_attempts=1,
                                        backend=pupu.backend)
    assert client.is_connected and pupu.connections == 1

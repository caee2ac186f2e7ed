"""The radio, as the relay and `run.py ble-scan` use it: find the pupu device, connect, scan, and tell
"there is no Bluetooth here" apart from "the device is not in reach".

The only module that talks to bleak's scanner and to bleak-retry-connector. Tests give `Bluetooth`
their own `find` and a fake `backend` (tests/fake_pupu.py); everything else is bleak's real code.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from bleak import BleakClient, BleakScanner
from bleak.backends.device import BLEDevice
from bleak.exc import BleakBluetoothNotAvailableError, BleakDBusError, BleakError
from bleak_retry_connector import (BleakClientWithServiceCache, close_stale_connections, establish_connection,
                                   get_device)
from bleak_retry_connector import bluez

log = logging.getLogger(__name__)

# A Bluetooth address (Linux, Windows) or a CoreBluetooth UUID (macOS): anything else is a name.
ADDRESS = re.compile(r"(?:[0-9A-Fa-f]{2}:){5}[0-9A-Fa-f]{2}|[0-9A-Fa-f]{8}(?:-[0-9A-Fa-f]{4}){3}-[0-9A-Fa-f]{12}")
SCAN_TIMEOUT_S = 10.0
CONNECT_ATTEMPTS = 3  # establish_connection's own retries, inside one attempt of the relay's backoff
DISCONNECT_TIMEOUT_S = 5.0
# D-Bus names that mean BlueZ itself is missing, not the device.
NO_BLUEZ = ("org.freedesktop.DBus.Error.ServiceUnknown", "org.freedesktop.DBus.Error.NameHasNoOwner",
            "org.freedesktop.DBus.Error.AccessDenied", "org.bluez.Error.NotReady")


class Unavailable(Exception):
    """No Bluetooth to use here (no adapter, adapter off, no BlueZ, no D-Bus): the message says which."""


class NotFound(Exception):
    """Bluetooth works, but the device was not seen."""


def unavailable(exc: BaseException) -> Unavailable | None:
    """The Unavailable that an exception from bleak means, or None if it is about the device or the link."""
    if isinstance(exc, Unavailable):
        return exc
    if isinstance(exc, BleakBluetoothNotAvailableError):
        return Unavailable(str(exc.args[0]) if exc.args else "Bluetooth is not available")
    if isinstance(exc, BleakDBusError) and exc.dbus_error in NO_BLUEZ:
        return Unavailable(f"BlueZ is not usable ({exc.dbus_error}): is bluetoothd running?")
    if isinstance(exc, (FileNotFoundError, ConnectionRefusedError)):
        return Unavailable("no D-Bus system bus, so no BlueZ: this machine has no usable Bluetooth")
    if isinstance(exc, PermissionError):
        return Unavailable("not allowed on the D-Bus system bus: Bluetooth is closed to this user")
    if isinstance(exc, BleakError) and "adapter" in str(exc).lower() and "not found" in str(exc).lower():
        return Unavailable(str(exc))
    return None


def is_address(target: str) -> bool:
    return ADDRESS.fullmatch(target) is not None


def describe(device: BLEDevice) -> str:
    return f"{device.name} ({device.address})" if device.name and device.name != device.address else device.address


async def find_device(target: str, timeout: float = SCAN_TIMEOUT_S) -> BLEDevice | None:
    """The device named or addressed by `target`, also when it is already connected (and so not advertising)."""
    if is_address(target):
        known = await get_device(target)  # BlueZ knows a device it is connected to, or saw lately
        if known is not None:
            return known
        return await BleakScanner.find_device_by_address(target, timeout=timeout)
    connected = await _connected_by_name(target)
    if connected is not None:
        return connected
    return await BleakScanner.find_device_by_name(target, timeout=timeout)


async def _connected_by_name(name: str) -> BLEDevice | None:
    """A device BlueZ holds a connection to under this name (a connected device does not advertise)."""
    properties = getattr(bluez, "_get_properties", None)  # bleak-retry-connector's cached view of BlueZ
    if properties is None:
        return None
    found = await properties()
    for path, interfaces in (found or {}).items():
        props = interfaces.get("org.bluez.Device1")
        if props and props.get("Connected") and name in (props.get("Alias"), props.get("Name")):
            return bluez.ble_device_from_properties(path, props)
    return None


@dataclass(frozen=True)
class Seen:
    name: str
    address: str
    rssi: int | None


async def scan(timeout: float = SCAN_TIMEOUT_S) -> list[Seen]:
    """Devices advertising nearby, strongest first. Raises Unavailable when there is no Bluetooth."""
    try:
        async with asyncio.timeout(timeout + 5):  # the scanner's own start and stop, bounded too
            found = await BleakScanner.discover(timeout=timeout, return_adv=True)
    except TimeoutError:
        raise Unavailable(f"the Bluetooth scan did not end within {timeout + 5:.0f} s") from None
    except Exception as exc:
        reason = unavailable(exc)
        if reason is None:
            raise
        raise reason from None
    seen = [Seen(device.name or adv.local_name or "", device.address, adv.rssi) for device, adv in found.values()]
    return sorted(seen, key=lambda s: (-(s.rssi if s.rssi is not None else -999), s.address))


Finder = Callable[[str], Awaitable[BLEDevice | None]]


class Bluetooth:
    """Finding and connecting, with one lock: one scan or connect at a time (BlueZ handles one well).

    `find` and `backend` are what tests replace: a finder that returns the fake's BLEDevice, and the
    fake's bleak backend, which bleak's real BleakClient then drives.
    """

    def __init__(self, *, find: Finder | None = None, backend: type | None = None,
                 scan_timeout_s: float = SCAN_TIMEOUT_S):
        self._find = find or (lambda target: find_device(target, scan_timeout_s))
        self._client_options: dict[str, Any] = {"backend": backend} if backend is not None else {}
        self.lock = asyncio.Lock()

    async def find(self, target: str) -> BLEDevice:
        try:
            device = await self._find(target)
        except Exception as exc:
            reason = unavailable(exc)
            if reason is None:
                raise
            raise reason from None
        if device is None:
            raise NotFound(f"{target} not found nearby")
        return device

    async def connect(self, device: BLEDevice, disconnected: Callable[[], None]) -> BleakClient:
        """A fresh client connected to the device (stale connections of this host closed first)."""
        try:
            await close_stale_connections(device)
            return await establish_connection(
                BleakClientWithServiceCache, device, describe(device), max_attempts=CONNECT_ATTEMPTS,
                disconnected_callback=lambda _client: disconnected(), **self._client_options)
        except Exception as exc:
            reason = unavailable(exc)
            if reason is None:
                raise
            raise reason from None

    @staticmethod
    async def disconnect(client: BleakClient) -> None:
        """Let go of a client; a link that is already gone, or a stuck D-Bus, is not an error."""
        try:
            async with asyncio.timeout(DISCONNECT_TIMEOUT_S):
                await client.disconnect()
        except (BleakError, EOFError, OSError, TimeoutError) as exc:
            log.debug("disconnect: %r", exc)

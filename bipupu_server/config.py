"""Settings from command-line flags and BIPUPU_* environment variables (flags win)."""

from __future__ import annotations

import os
import secrets
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from ipaddress import IPv4Network, IPv6Network, ip_network
from typing import Mapping, Union
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .ratelimit import Limit

IPNetwork = Union[IPv4Network, IPv6Network]

# The Nordic UART Service (SPEC §8): the relay writes frames to RX and the device answers on TX.
NUS_SERVICE = "6e400001-b5a3-f393-e0a9-e50e24dcca9e"
NUS_RX = "6e400002-b5a3-f393-e0a9-e50e24dcca9e"
NUS_TX = "6e400003-b5a3-f393-e0a9-e50e24dcca9e"
BLE_TEXT_MAX = 768  # docs/ble-protocol.md: the most text a card frame carries
BLE_CATCH_UP_MAX = 500  # as many as a /ws replay


class ConfigError(Exception):
    """A setting is unusable; the message is one line meant for the operator."""


@dataclass(frozen=True)
class Config:
    """Everything the server needs to start; built once, never mutated."""

    data_dir: Path
    secret_key: str
    host: str = "0.0.0.0"
    port: int = 8080
    admin_username: str = "admin"
    admin_password: str | None = None
    registration: str = "open"
    rate_limit: bool = True
    access_log: bool = False  # one line per request (BIPUPU_ACCESS_LOG=on); off by default: see README
    # heap.py: freeze the heap so no GC pass stalls the loop. The collector is process-wide: run.py's server
    # manages it (BIPUPU_GC_KEEPER, on by default there); an app that other code builds (tests) leaves it be.
    gc_keeper: bool = False
    bcrypt_cost: int = 12
    timezone: str | None = None
    ble_device: str | None = None  # the pupu device's name or Bluetooth address: with ble_owner, the relay runs
    ble_owner: str | None = None
    ble_service_uuid: str = NUS_SERVICE  # GATT of the pupu device: the Nordic UART Service by default
    ble_write_uuid: str = NUS_RX
    ble_notify_uuid: str = NUS_TX
    ble_catch_up: int = 20  # after the device was away, the newest this many missed cards are shown
    ble_text_bytes: int = 200  # the device's text limit in UTF-8 bytes (docs/ble-protocol.md)
    access_ttl_s: int = 3600
    refresh_ttl_s: int = 30 * 24 * 3600
    login_fail_limit: Limit = field(default_factory=lambda: Limit(10, 15 * 60))
    login_addr_limit: Limit = field(default_factory=lambda: Limit(30, 60))
    register_addr_limit: Limit = field(default_factory=lambda: Limit(10, 3600))
    max_body_bytes: int = 64 * 1024  # JSON bodies and WebSocket frames
    body_timeout_s: float = 30.0  # to read a whole request body, once its headers are in
    connections_per_address: int = 128  # open connections of one address but authenticated sockets; 0: no cap
    # Reverse proxies on the box or the LAN: their connections are not capped, and limits key on
    # the client address they put in X-Forwarded-For. Nobody else's X-Forwarded-For is believed.
    trusted_proxies: tuple[IPNetwork, ...] = ()
    cors_origins: tuple[str, ...] = ()  # web Apps on these origins may call the API from a browser
    send_burst: int = 30  # postcards a sender may send at once, then one per send_refill_s
    send_refill_s: float = 2.0
    stranger_daily_limit: int = 5  # cards a day to someone who has not made you a contact
    ws_auth_timeout_s: float = 10.0
    ws_idle_timeout_s: float = 90.0
    ws_max_per_user: int = 5
    ws_queue_size: int = 256  # frames waiting for a slow reader before it is closed (4009)
    ws_session_check_s: float = 30.0  # how often live sockets' sessions are checked (signed out elsewhere)

    @property
    def db_path(self) -> Path:
        return self.data_dir / "bipupu.db"


SECRET_FILE = "secret_key"


def prepare_data_dir(path: Path) -> Path:
    """Create the data dir (0700) if needed and prove it is a writable directory."""
    path = path.expanduser().resolve()
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ConfigError(f"data dir {path} is not a directory") from None
    except OSError as exc:
        raise ConfigError(f"cannot create data dir {path}: {exc.strerror}") from None
    if not path.is_dir():
        raise ConfigError(f"data dir {path} is not a directory")
    probe = path / f".write-test-{os.getpid()}"
    try:
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"data dir {path} is not writable: {exc.strerror}") from None
    return path


def load_secret_key(data_dir: Path) -> str:
    """Read the secret key kept in the data dir, creating it (mode 0600) on first start."""
    key_path = data_dir / SECRET_FILE
    try:
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        try:
            key = key_path.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"cannot read {key_path}: {exc.strerror}") from None
        if len(key) < 32:
            raise ConfigError(f"{key_path} holds no usable key (too short); delete it to generate a new one")
        return key
    except OSError as exc:
        raise ConfigError(f"cannot create {key_path}: {exc.strerror}") from None
    key = secrets.token_urlsafe(48)
    with os.fdopen(fd, "w") as fh:
        fh.write(key + "\n")
    return key


def _limit(name: str, text: str) -> Limit:
    """COUNT/SECONDS, e.g. 10/900."""
    try:
        count, window = text.split("/")
        limit = Limit(int(count), float(window))
    except ValueError:
        raise ConfigError(f"{name} must look like COUNT/SECONDS, e.g. 10/900, not {text!r}") from None
    if limit.count < 1 or limit.window_s <= 0:
        raise ConfigError(f"{name} needs a positive count and window, not {text!r}")
    return limit


def _int(name: str, text: str, low: int, high: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, not {text!r}") from None
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, not {value}")
    return value


def _networks(name: str, text: str) -> tuple[IPNetwork, ...]:
    try:
        return tuple(ip_network(part.strip(), strict=False) for part in text.split(",") if part.strip())
    except ValueError:
        raise ConfigError(f"{name} must be comma-separated addresses or networks (127.0.0.1, 10.0.0.0/8), "
                          f"not {text!r}") from None


def _origins(name: str, text: str) -> tuple[str, ...]:
    origins = tuple(part.strip().rstrip("/") for part in text.split(",") if part.strip())
    for origin in origins:
        scheme, _, host = origin.partition("://")
        if scheme not in ("http", "https") or not host or "/" in host:
            raise ConfigError(f"{name} must be comma-separated origins like https://app.example, not {origin!r}")
    return origins


def _uuid(name: str, text: str) -> str:
    try:
        return str(uuid.UUID(text.strip()))
    except ValueError:
        raise ConfigError(f"{name} must be a 128-bit UUID like {NUS_SERVICE}, not {text!r}") from None


def _choice(name: str, text: str, choices: tuple[str, ...]) -> str:
    value = text.strip().lower()
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, not {text!r}")
    return value


def from_environment(
    env: Mapping[str, str],
    *,
    host: str | None = None,
    port: int | None = None,
    data_dir: str | None = None,
) -> Config:
    """Build the Config from the environment and the flags; prepares the data dir and secret key."""
    get = lambda name, default=None: env.get(name) or default  # noqa: E731  empty means unset
    port_value = port if port is not None else _int("BIPUPU_PORT", get("BIPUPU_PORT", "8080"), 0, 65535)
    if not 0 <= port_value <= 65535:
        raise ConfigError(f"--port must be between 0 and 65535, not {port_value}")
    directory = prepare_data_dir(Path(data_dir or get("BIPUPU_DATA_DIR", "./data")))
    secret = get("BIPUPU_SECRET_KEY")
    if secret is not None and len(secret) < 16:
        raise ConfigError("BIPUPU_SECRET_KEY must be at least 16 characters")
    tz = get("BIPUPU_TIMEZONE")
    if tz is not None:
        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(f"BIPUPU_TIMEZONE {tz!r} is not a known time zone") from None
    ble_owner = get("BIPUPU_BLE_OWNER")
    if ble_owner is not None and not (len(ble_owner) == 8 and ble_owner.isascii() and ble_owner.isdigit()):
        raise ConfigError(f"BIPUPU_BLE_OWNER must be an 8-digit bipupu_id, not {ble_owner!r}")
    ble_device = get("BIPUPU_BLE_DEVICE")
    if (ble_device is None) != (ble_owner is None):
        missing, given = ("BIPUPU_BLE_OWNER", "BIPUPU_BLE_DEVICE") if ble_owner is None else \
            ("BIPUPU_BLE_DEVICE", "BIPUPU_BLE_OWNER")
        raise ConfigError(f"{given} is set but {missing} is not: the BLE relay needs both (or neither)")
    if ble_device is not None and not 1 <= len(ble_device.strip()) <= 248:
        raise ConfigError("BIPUPU_BLE_DEVICE must be the device's name or Bluetooth address")
    limit = lambda name, default: _limit(name, get(name, default))  # noqa: E731
    admin_username, admin_password = get("BIPUPU_ADMIN_USERNAME", "admin"), get("BIPUPU_ADMIN_PASSWORD")
    return Config(
        data_dir=directory,
        secret_key=secret or load_secret_key(directory),
        host=host or get("BIPUPU_HOST", "0.0.0.0"),
        port=port_value,
        admin_username=admin_username,
        admin_password=admin_password,
        registration=_choice("BIPUPU_REGISTRATION", get("BIPUPU_REGISTRATION", "open"), ("open", "closed")),
        rate_limit=_choice("BIPUPU_RATE_LIMIT", get("BIPUPU_RATE_LIMIT", "on"), ("on", "off")) == "on",
        access_log=_choice("BIPUPU_ACCESS_LOG", get("BIPUPU_ACCESS_LOG", "off"), ("on", "off")) == "on",
        gc_keeper=_choice("BIPUPU_GC_KEEPER", get("BIPUPU_GC_KEEPER", "on"), ("on", "off")) == "on",
        bcrypt_cost=_int("BIPUPU_BCRYPT_COST", get("BIPUPU_BCRYPT_COST", "12"), 4, 15),
        timezone=tz,
        ble_device=ble_device.strip() if ble_device is not None else None,
        ble_owner=ble_owner,
        ble_service_uuid=_uuid("BIPUPU_BLE_SERVICE_UUID", get("BIPUPU_BLE_SERVICE_UUID", NUS_SERVICE)),
        ble_write_uuid=_uuid("BIPUPU_BLE_WRITE_UUID", get("BIPUPU_BLE_WRITE_UUID", NUS_RX)),
        ble_notify_uuid=_uuid("BIPUPU_BLE_NOTIFY_UUID", get("BIPUPU_BLE_NOTIFY_UUID", NUS_TX)),
        ble_catch_up=_int("BIPUPU_BLE_CATCH_UP", get("BIPUPU_BLE_CATCH_UP", "20"), 1, BLE_CATCH_UP_MAX),
        ble_text_bytes=_int("BIPUPU_BLE_TEXT_BYTES", get("BIPUPU_BLE_TEXT_BYTES", "200"), 1, BLE_TEXT_MAX),
        access_ttl_s=_int("BIPUPU_ACCESS_TTL", get("BIPUPU_ACCESS_TTL", "3600"), 60, 7 * 24 * 3600),
        refresh_ttl_s=_int("BIPUPU_REFRESH_TTL", get("BIPUPU_REFRESH_TTL", str(30 * 24 * 3600)), 3600, 365 * 24 * 3600),
        login_fail_limit=limit("BIPUPU_LIMIT_LOGIN_FAILURES", "10/900"),
        login_addr_limit=limit("BIPUPU_LIMIT_LOGIN_ADDRESS", "30/60"),
        register_addr_limit=limit("BIPUPU_LIMIT_REGISTER_ADDRESS", "10/3600"),
        connections_per_address=_int("BIPUPU_LIMIT_CONNECTIONS", get("BIPUPU_LIMIT_CONNECTIONS", "128"), 0, 1_000_000),
        body_timeout_s=_int("BIPUPU_BODY_TIMEOUT", get("BIPUPU_BODY_TIMEOUT", "30"), 1, 3600),
        trusted_proxies=_networks("BIPUPU_TRUSTED_PROXIES", get("BIPUPU_TRUSTED_PROXIES", "")),
        cors_origins=_origins("BIPUPU_CORS_ORIGINS", get("BIPUPU_CORS_ORIGINS", "")),
    )

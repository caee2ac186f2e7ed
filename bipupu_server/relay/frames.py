"""The frame between the relay and the pupu device, as pure functions: encode, decode, chunks, reassembly.

docs/ble-protocol.md describes every byte and holds the test vectors; this module is its reference
implementation (no I/O, no asyncio, no bleak), meant to be read by firmware authors as well.
"""

from __future__ import annotations

import binascii
import enum
import re
import unicodedata
import uuid
from dataclasses import dataclass
from typing import Any, ClassVar

from ..ids import MESSAGE_ID
from ..mailbox import DURATION_MAX_S, DURATION_MIN_S, EFFECTS, FONTS, MSG_TYPES, SHORT_NAME, is_address

START = 0xB7
VERSION = 1
HEADER_BYTES = 6  # start, version|type, seq u16, payload length u16
CRC_BYTES = 2
MAX_FRAME_BYTES = 1024
MAX_PAYLOAD_BYTES = MAX_FRAME_BYTES - HEADER_BYTES - CRC_BYTES
TEXT_MAX_BYTES = 768  # the most text a SHOW_CARD carries; with the longest other fields it still fits a frame
TEXT_DEFAULT_BYTES = 200  # the text limit of a device that states none
SENDER_MAX = 64
CHUNK_DEFAULT = 20  # ATT_MTU 23 minus the 3-byte write header: what every BLE link can take
DEFAULT_COLOR = "#FFFFFF"  # sent when the pattern has no led_color (flag bit 1 clear)

# The exchange (docs/ble-protocol.md, "The exchange"): how the relay waits for the device's answer.
ANSWER_TIMEOUT_S = 2.0
SEND_TRIES = 3
BUSY_DELAY_S = 1.0
BUSY_MAX_S = 30.0

FLAG_VIBRATE = 0x01
FLAG_COLOR = 0x02  # the R, G, B bytes are the card's led_color, not DEFAULT_COLOR
FLAG_TRUNCATED = 0x04  # the text was cut to the device's limit: the device may draw an ellipsis
FLAGS = FLAG_VIBRATE | FLAG_COLOR | FLAG_TRUNCATED
UPPER_COLOR = re.compile(r"#[0-9A-F]{6}")
ZWJ = "\u200d"


class Kind(enum.IntEnum):
    """The frame type, the low 4 bits of byte 1: server to device below 8, device to server from 8."""

    SHOW_CARD = 0x1
    CLEAR = 0x2
    PING = 0x3
    TIME = 0x4
    ACK = 0x8
    NACK = 0x9


class Status(enum.IntEnum):
    """Why the device answers NACK (OK is what an ACK means and never travels in a NACK)."""

    OK = 0
    BAD_CRC = 1
    TOO_LONG = 2
    BUSY = 3
    UNKNOWN_VERSION = 4
    UNKNOWN_TYPE = 5
    MALFORMED = 6


@dataclass(frozen=True, kw_only=True)
class ShowCard:
    """Show one postcard: its id (to ignore repeats), who sent it, how it looks, and its text."""

    kind: ClassVar[Kind] = Kind.SHOW_CARD
    seq: int
    message_id: str
    msg_type: str
    sender: str
    text: str
    led_color: str | None = None  # "#RRGGBB" upper-case; None sends DEFAULT_COLOR with flag bit 1 clear
    effect: str = EFFECTS[0]
    font: str = FONTS[0]
    duration_s: int | None = None  # None: the device's own default (0 on the wire)
    vibrate: bool = False
    sound: str | None = None
    screensaver: str | None = None
    truncated: bool = False


@dataclass(frozen=True, kw_only=True)
class Clear:
    """Clear the screen."""

    kind: ClassVar[Kind] = Kind.CLEAR
    seq: int


@dataclass(frozen=True, kw_only=True)
class Ping:
    """Are you there? (answered by ACK)."""

    kind: ClassVar[Kind] = Kind.PING
    seq: int


@dataclass(frozen=True, kw_only=True)
class Time:
    """Set the device's clock: Unix seconds and the owner's UTC offset in minutes."""

    kind: ClassVar[Kind] = Kind.TIME
    seq: int
    unix_s: int
    tz_offset_min: int = 0


@dataclass(frozen=True, kw_only=True)
class Ack:
    """The device took the frame with this seq."""

    kind: ClassVar[Kind] = Kind.ACK
    seq: int
    status: ClassVar[Status] = Status.OK


@dataclass(frozen=True, kw_only=True)
class Nack:
    """The device refused the frame with this seq, and says why."""

    kind: ClassVar[Kind] = Kind.NACK
    seq: int
    status: Status


Frame = ShowCard | Clear | Ping | Time | Ack | Nack
FRAMES: dict[Kind, type[Frame]] = {cls.kind: cls for cls in (ShowCard, Clear, Ping, Time, Ack, Nack)}


class FrameError(Exception):
    """Bytes that are not a frame; `status` is the NACK a device answers, `seq` the header's when it was read."""

    status = Status.MALFORMED

    def __init__(self, message: str, seq: int | None = None):
        super().__init__(message)
        self.seq = seq


class BadStart(FrameError):
    """The first byte is not START."""


class Truncated(FrameError):
    """Fewer bytes than the header or its payload length says."""


class TrailingBytes(FrameError):
    """More bytes than the header's payload length says."""


class TooLong(FrameError):
    """A payload length beyond what the reader holds."""

    status = Status.TOO_LONG


class BadCrc(FrameError):
    """The CRC does not match the header and payload."""

    status = Status.BAD_CRC


class UnknownVersion(FrameError):
    """A version this reader does not speak."""

    status = Status.UNKNOWN_VERSION


class UnknownType(FrameError):
    """A frame type this version does not have."""

    status = Status.UNKNOWN_TYPE


class BadPayload(FrameError):
    """A payload not as its type says: field lengths, enum values, reserved bits, UTF-8."""


def crc16(data: bytes) -> int:
    """CRC-16/XMODEM (poly 0x1021, init 0, no reflection): what mcumgr's serial transport uses."""
    return binascii.crc_hqx(data, 0)


def truncate_utf8(text: str, max_bytes: int) -> str:
    """The longest start of `text` within `max_bytes` of UTF-8, cut between characters.

    The cut also backs off so no combining mark, variation selector, emoji modifier, ZWJ sequence
    or flag loses its base (most of UAX #29's grapheme clusters), unless that would leave nothing.
    """
    if max_bytes < 0:
        raise ValueError("max_bytes must not be negative")
    data = text.encode()
    if len(data) <= max_bytes:
        return text
    cut = max_bytes
    while cut and data[cut] & 0xC0 == 0x80:  # a continuation byte: the character started before the cut
        cut -= 1
    kept = len(data[:cut].decode())
    end = kept
    while end and _joined(text, end):
        end -= 1
    return text[:end] if end else text[:kept]


def _joined(text: str, i: int) -> bool:
    """Whether text[i - 1] and text[i] belong to one grapheme cluster."""
    before, after = text[i - 1], text[i]
    if before == ZWJ or after == ZWJ or unicodedata.category(after) in ("Mn", "Mc", "Me"):
        return True
    if "\U0001f3fb" <= after <= "\U0001f3ff" or "\U000e0020" <= after <= "\U000e007f":  # skin tone, emoji tag
        return True
    if _regional(before) and _regional(after):  # flags are pairs: an odd run before i pairs with text[i]
        run = 0
        while run < i and _regional(text[i - 1 - run]):
            run += 1
        return run % 2 == 1
    return False


def _regional(ch: str) -> bool:
    return "\U0001f1e6" <= ch <= "\U0001f1ff"


def card(message: dict[str, Any], *, seq: int, max_text_bytes: int = TEXT_DEFAULT_BYTES) -> ShowCard:
    """The SHOW_CARD of a message object (as the API and the hub give it), its text cut to the device's limit."""
    if isinstance(max_text_bytes, bool) or not isinstance(max_text_bytes, int) \
            or not 0 <= max_text_bytes <= TEXT_MAX_BYTES:
        raise ValueError(f"max_text_bytes must be 0 to {TEXT_MAX_BYTES}")
    pattern = message.get("pattern") or {}
    color = pattern.get("led_color")
    text = truncate_utf8(message["content"], max_text_bytes)
    return ShowCard(seq=seq, message_id=message["id"], msg_type=message["msg_type"], sender=message["sender_id"],
                    text=text, truncated=text != message["content"],
                    led_color=color.upper() if isinstance(color, str) else color,
                    effect=pattern.get("effect", EFFECTS[0]), font=pattern.get("font", FONTS[0]),
                    duration_s=pattern.get("duration_s"), vibrate=pattern.get("vibrate", False),
                    sound=pattern.get("sound"), screensaver=pattern.get("screensaver"))


def encode_card(message: dict[str, Any], *, seq: int, max_text_bytes: int = TEXT_DEFAULT_BYTES) -> bytes:
    """The SHOW_CARD frame of a message object, as bytes."""
    return encode(card(message, seq=seq, max_text_bytes=max_text_bytes))


def encode(frame: Frame) -> bytes:
    """The bytes of a frame; ValueError names the first field out of range."""
    problem = _problem(frame)
    if problem:
        raise ValueError(problem)
    if isinstance(frame, ShowCard):
        payload = _card_payload(frame)
    elif isinstance(frame, Time):
        payload = frame.unix_s.to_bytes(4, "big") + frame.tz_offset_min.to_bytes(2, "big", signed=True)
    elif isinstance(frame, Nack):
        payload = bytes([frame.status])
    else:
        payload = b""
    head = bytes([START, VERSION << 4 | frame.kind]) + frame.seq.to_bytes(2, "big") + len(payload).to_bytes(2, "big")
    return head + payload + crc16(head + payload).to_bytes(2, "big")


def _card_payload(frame: ShowCard) -> bytes:
    flags = ((FLAG_VIBRATE if frame.vibrate else 0) | (FLAG_COLOR if frame.led_color else 0)
             | (FLAG_TRUNCATED if frame.truncated else 0))
    text = frame.text.encode()
    return b"".join([
        uuid.UUID(frame.message_id).bytes,
        bytes([MSG_TYPES.index(frame.msg_type)]),
        bytes.fromhex((frame.led_color or DEFAULT_COLOR)[1:]),
        bytes([EFFECTS.index(frame.effect), FONTS.index(frame.font), frame.duration_s or 0, flags]),
        *(bytes([len(name)]) + name.encode() for name in (frame.sender, frame.sound or "", frame.screensaver or "")),
        len(text).to_bytes(2, "big"),
        text,
    ])


def _problem(frame: Any) -> str | None:
    """What is wrong with a frame's fields, if anything: one rule set for encode and decode."""
    if type(frame) not in FRAMES.values():
        return f"not a frame: {type(frame).__name__}"
    if not _whole(frame.seq) or not 0 <= frame.seq <= 0xFFFF:
        return "seq must be 0 to 65535"
    if isinstance(frame, ShowCard):
        return _card_problem(frame)
    if isinstance(frame, Time):
        if not _whole(frame.unix_s) or not 0 <= frame.unix_s <= 0xFFFFFFFF:
            return "unix_s must be 0 to 2**32 - 1"
        if not _whole(frame.tz_offset_min) or not -1439 <= frame.tz_offset_min <= 1439:
            return "tz_offset_min must be -1439 to 1439"
    if isinstance(frame, Nack) and (not isinstance(frame.status, Status) or frame.status is Status.OK):
        return "a NACK's status must be a Status other than OK"
    return None


def _card_problem(frame: ShowCard) -> str | None:
    if not isinstance(frame.message_id, str) or not MESSAGE_ID.fullmatch(frame.message_id):
        return "message_id must be a lowercase UUID string"
    if frame.msg_type not in MSG_TYPES:
        return f"msg_type must be one of {', '.join(MSG_TYPES)}"
    if not is_address(frame.sender) or len(frame.sender) > SENDER_MAX:
        return f"sender must be a bipupu_id or a service id of at most {SENDER_MAX} characters"
    if not isinstance(frame.text, str):
        return "text must be a string"
    try:
        size = len(frame.text.encode())
    except UnicodeEncodeError:
        return "text must be valid Unicode (no lone surrogates)"
    if size > TEXT_MAX_BYTES:
        return f"text must be at most {TEXT_MAX_BYTES} bytes of UTF-8"
    if frame.led_color is not None and not (isinstance(frame.led_color, str)
                                            and UPPER_COLOR.fullmatch(frame.led_color)):
        return "led_color must look like #RRGGBB (upper-case) or be None"
    if frame.effect not in EFFECTS:
        return f"effect must be one of {', '.join(EFFECTS)}"
    if frame.font not in FONTS:
        return f"font must be one of {', '.join(FONTS)}"
    if frame.duration_s is not None and (not _whole(frame.duration_s)
                                         or not DURATION_MIN_S <= frame.duration_s <= DURATION_MAX_S):
        return f"duration_s must be {DURATION_MIN_S} to {DURATION_MAX_S} or None"
    if not isinstance(frame.vibrate, bool) or not isinstance(frame.truncated, bool):
        return "vibrate and truncated must be true or false"
    for field, name in (("sound", frame.sound), ("screensaver", frame.screensaver)):
        if name is not None and (not isinstance(name, str) or not SHORT_NAME.fullmatch(name)):
            return f"{field} must be a short lowercase name or None"
    return None


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def decode(data: bytes, *, max_payload: int = MAX_PAYLOAD_BYTES) -> Frame:
    """The frame in `data` (exactly one, whole); a FrameError subclass says what is wrong."""
    data = bytes(data)
    if not data or data[0] != START:
        raise BadStart(f"a frame starts with 0x{START:02X}" + (f", not 0x{data[0]:02X}" if data else ""))
    if len(data) < HEADER_BYTES:
        raise Truncated(f"{len(data)} bytes is shorter than the {HEADER_BYTES}-byte header")
    seq, length = int.from_bytes(data[2:4], "big"), int.from_bytes(data[4:6], "big")
    if length > max_payload:
        raise TooLong(f"a payload of {length} bytes is more than the {max_payload} this reader holds", seq)
    end = HEADER_BYTES + length + CRC_BYTES
    if len(data) < end:
        raise Truncated(f"{len(data)} bytes of a {end}-byte frame", seq)
    if len(data) > end:
        raise TrailingBytes(f"{len(data) - end} bytes after the {end}-byte frame", seq)
    if crc16(data[:-CRC_BYTES]) != int.from_bytes(data[-CRC_BYTES:], "big"):
        raise BadCrc(f"CRC 0x{int.from_bytes(data[-CRC_BYTES:], 'big'):04X}, computed "
                     f"0x{crc16(data[:-CRC_BYTES]):04X}", seq)
    version, code = data[1] >> 4, data[1] & 0x0F
    if version != VERSION:
        raise UnknownVersion(f"version {version} (this reader speaks {VERSION})", seq)
    if code not in FRAMES:
        raise UnknownType(f"frame type 0x{code:X}", seq)
    payload = _Payload(data[HEADER_BYTES:-CRC_BYTES], seq)
    kind = Kind(code)
    if kind is Kind.SHOW_CARD:
        frame: Frame = _read_card(payload)
    elif kind is Kind.TIME:
        frame = Time(seq=seq, unix_s=payload.number(4), tz_offset_min=payload.number(2, signed=True))
    elif kind is Kind.NACK:
        status = payload.number(1)
        if status not in set(Status):
            raise BadPayload(f"NACK status {status} is not a known status", seq)
        frame = Nack(seq=seq, status=Status(status))
    else:
        frame = FRAMES[kind](seq=seq)
    payload.end(kind)
    problem = _problem(frame)
    if problem:
        raise BadPayload(problem, seq)
    return frame


class _Payload:
    """Reads a payload's fields in order; running out, or bytes left over, is a BadPayload."""

    def __init__(self, data: bytes, seq: int):
        self.data, self.seq, self.at = data, seq, 0

    def take(self, n: int) -> bytes:
        if self.at + n > len(self.data):
            raise BadPayload(f"the payload ends inside a field (byte {self.at} of {len(self.data)})", self.seq)
        self.at += n
        return self.data[self.at - n:self.at]

    def number(self, n: int, *, signed: bool = False) -> int:
        return int.from_bytes(self.take(n), "big", signed=signed)

    def choice(self, names: tuple[str, ...], field: str) -> str:
        code = self.number(1)
        if code >= len(names):
            raise BadPayload(f"{field} code {code} is not one of 0 to {len(names) - 1}", self.seq)
        return names[code]

    def name(self, field: str) -> str:
        raw = self.take(self.number(1))
        if not raw.isascii():
            raise BadPayload(f"{field} must be ASCII", self.seq)
        return raw.decode("ascii")

    def end(self, kind: Kind) -> None:
        if self.at != len(self.data):
            raise BadPayload(f"{len(self.data) - self.at} bytes left over in the {kind.name} payload", self.seq)


def _read_card(payload: _Payload) -> ShowCard:
    seq = payload.seq
    message_id = str(uuid.UUID(bytes=payload.take(16)))
    msg_type = payload.choice(MSG_TYPES, "msg_type")
    rgb = payload.take(3)
    effect, font = payload.choice(EFFECTS, "effect"), payload.choice(FONTS, "font")
    duration, flags = payload.number(1), payload.number(1)
    if flags & ~FLAGS:
        raise BadPayload(f"flag bits 0x{flags & ~FLAGS:02X} are reserved (must be 0)", seq)
    if not flags & FLAG_COLOR and rgb != bytes.fromhex(DEFAULT_COLOR[1:]):
        raise BadPayload(f"with flag bit 1 clear the colour must be {DEFAULT_COLOR}", seq)
    sender, sound, screensaver = payload.name("sender"), payload.name("sound"), payload.name("screensaver")
    try:
        text = payload.take(payload.number(2)).decode("utf-8")
    except UnicodeDecodeError as error:
        raise BadPayload(f"text is not UTF-8 ({error.reason} at byte {error.start})", seq) from None
    return ShowCard(seq=seq, message_id=message_id, msg_type=msg_type, sender=sender, text=text,
                    led_color="#" + rgb.hex().upper() if flags & FLAG_COLOR else None, effect=effect, font=font,
                    duration_s=duration or None, vibrate=bool(flags & FLAG_VIBRATE), sound=sound or None,
                    screensaver=screensaver or None, truncated=bool(flags & FLAG_TRUNCATED))


def chunks(frame: bytes, size: int | None = None) -> list[bytes]:
    """The frame cut into writes of at most `size` bytes (the characteristic's write size; 20 when unknown)."""
    size = size or CHUNK_DEFAULT
    if not _whole(size) or size < 1:
        raise ValueError(f"a chunk size must be a positive whole number, not {size!r}")
    return [frame[at:at + size] for at in range(0, len(frame), size)]


class Reassembler:
    """The device's side of chunks: feed it each write as it comes, get back every whole frame (or its error).

    Between feeds it holds less than one frame: a payload length over `max_payload` is answered with
    TooLong and its bytes are skipped as they arrive, never stored. Bytes before a start byte are
    dropped (counted in `discarded`); after a bad CRC it looks for the next start byte inside the
    frame, since the damage may have been to the length.
    """

    def __init__(self, max_payload: int = MAX_PAYLOAD_BYTES):
        if not _whole(max_payload) or not 0 <= max_payload <= 0xFFFF:
            raise ValueError("max_payload must be 0 to 65535")
        self.max_payload = max_payload
        self.discarded = 0
        self._buffer = bytearray()
        self._skip = 0

    @property
    def held(self) -> int:
        """Bytes held toward the next frame."""
        return len(self._buffer)

    def reset(self) -> None:
        """Forget a partial frame (on each new connection)."""
        self._buffer.clear()
        self._skip = 0

    def feed(self, chunk: bytes) -> list[Frame | FrameError]:
        """Take one write; return what it completed, in order: frames to act on, errors to answer NACK."""
        self._buffer += chunk
        found: list[Frame | FrameError] = []
        while self._buffer:
            if self._skip:
                n = min(self._skip, len(self._buffer))
                del self._buffer[:n]
                self._skip -= n
                self.discarded += n
                continue
            start = self._buffer.find(START)
            if start != 0:
                n = len(self._buffer) if start < 0 else start
                del self._buffer[:n]
                self.discarded += n
                continue
            if len(self._buffer) < HEADER_BYTES:
                break
            seq, length = int.from_bytes(self._buffer[2:4], "big"), int.from_bytes(self._buffer[4:6], "big")
            if length > self.max_payload:
                found.append(TooLong(f"a payload of {length} bytes is more than the {self.max_payload} "
                                     f"this reader holds", seq))
                del self._buffer[:HEADER_BYTES]
                self._skip = length + CRC_BYTES
                continue
            end = HEADER_BYTES + length + CRC_BYTES
            if len(self._buffer) < end:
                break
            try:
                found.append(decode(bytes(self._buffer[:end]), max_payload=self.max_payload))
            except BadCrc as error:
                found.append(error)
                del self._buffer[:1]
                continue
            except FrameError as error:
                found.append(error)
            del self._buffer[:end]
        return found

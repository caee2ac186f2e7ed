"""bipupu_server.relay.frames: the BLE frame, byte for byte as docs/ble-protocol.md says.

The document's test vectors and tables are read from the document itself, so it cannot drift from
the code. Hypothesis runs derandomized (the same cases every run) and without an example database.
"""

from __future__ import annotations

import binascii
import json
import re
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bipupu_server.identity import BIPUPU_ID
from bipupu_server.mailbox import EFFECTS, FONTS, MSG_TYPES, SHORT_NAME, check_pattern, message_view
from bipupu_server.relay import frames
from bipupu_server.relay.frames import (Ack, BadCrc, BadPayload, BadStart, Clear, FrameError, Kind, Nack, Ping,
                                        Reassembler, ShowCard, Status, Time, TooLong, TrailingBytes, Truncated,
                                        UnknownType, UnknownVersion, card, chunks, decode, encode, encode_card,
                                        truncate_utf8)

DOC = (Path(__file__).resolve().parents[1] / "docs" / "ble-protocol.md").read_text(encoding="utf-8")
VECTOR = re.compile(r"```json\n(.*?)\n```\s*```text\n(.*?)\n```", re.DOTALL)
PROPERTY = settings(derandomize=True, database=None, deadline=None, max_examples=200)
MESSAGE_ID = "019c47be-9c3b-7048-b456-789abcdef012"


def doc_vectors() -> list[tuple[dict[str, Any], bytes]]:
    section = DOC.split("\n## Test vectors\n", 1)[1]
    return [(json.loads(spec), bytes.fromhex(hexa)) for spec, hexa in VECTOR.findall(section)]


def doc_table(header: str) -> list[list[str]]:
    """The rows of the document's table whose header line starts with `header`, cells without backticks."""
    lines = DOC.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip().strip("`") for cell in line.strip().strip("|").split("|")])
    return rows


def frame_of(fields: dict[str, Any]) -> frames.Frame:
    fields = dict(fields)
    cls = frames.FRAMES[Kind[fields.pop("type")]]
    if "status" in fields:
        fields["status"] = Status[fields["status"]]
    return cls(**fields)


def envelope(byte1: int, payload: bytes = b"", seq: int = 9) -> bytes:
    """A frame around any payload, with a correct CRC: written here from the document, not with encode()."""
    head = bytes([0xB7, byte1]) + seq.to_bytes(2, "big") + len(payload).to_bytes(2, "big")
    return head + payload + binascii.crc_hqx(head + payload, 0).to_bytes(2, "big")


def card_payload(*, msg_type=0, rgb=b"\xff\x88\x00", effect=0, font=0, duration=0, flags=0x02, sender=b"00000002",
                 sound=b"", screensaver=b"", text=b"hi", text_length=None) -> bytes:
    """A SHOW_CARD payload laid out field by field as the document's table says."""
    return b"".join([bytes(range(16)), bytes([msg_type]), rgb, bytes([effect, font, duration, flags]),
                     bytes([len(sender)]), sender, bytes([len(sound)]), sound, bytes([len(screensaver)]), screensaver,
                     (len(text) if text_length is None else text_length).to_bytes(2, "big"), text])


def message(content: str = "晚安 🌙", pattern: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    return {"id": MESSAGE_ID, "sender_id": "00000002", "receiver_id": "00000001", "content": content,
            "msg_type": "USER_POSTCARD", "pattern": pattern or {}, "created_at": "2026-02-10T13:30:00.123Z", **fields}


VECTORS = doc_vectors()
VALID = [(spec, data) for spec, data in VECTORS if "frame" in spec]
INVALID = [(spec, data) for spec, data in VECTORS if "error" in spec]
EVERY_KIND = [Ping(seq=0), Clear(seq=1), Time(seq=2, unix_s=1770730200, tz_offset_min=-300), Ack(seq=3),
              Nack(seq=4, status=Status.TOO_LONG), card(message(), seq=5), card(message("x" * 300), seq=65535)]


# The CRC

def test_the_crc_is_crc16_xmodem():
    assert frames.crc16(b"123456789") == 0x31C3  # the catalogue's check value for CRC-16/XMODEM
    assert frames.crc16(bytes.fromhex("0A2B4C6D8E4900C4")) == 0x8866  # Zephyr's test of crc16_itu_t(0x0000, …)
    assert frames.crc16(b"") == 0
    assert "CRC-16/XMODEM" in DOC and "`0x31C3`" in DOC


def test_the_bitwise_crc_of_the_document_is_crc_hqx():
    def pupu_crc16(data: bytes) -> int:  # the document's C function, line for line
        crc = 0
        for byte in data:
            crc ^= byte << 8
            for _ in range(8):
                crc = ((crc << 1) ^ 0x1021 if crc & 0x8000 else crc << 1) & 0xFFFF
        return crc

    for data in (b"123456789", bytes(range(256)), "晚安 🌙".encode(), *(encode(frame) for frame in EVERY_KIND)):
        assert pupu_crc16(data) == frames.crc16(data)


# The document: vectors and tables

def test_the_document_has_its_vectors():
    names = [spec["name"] for spec, _ in VECTORS]
    assert len(names) == len(set(names))
    assert {"ping", "time", "show-card-postcard", "show-card-truncated", "clear", "ack", "nack-busy"} <= set(names)
    assert {spec["frame"]["type"] for spec, _ in VALID} == {kind.name for kind in Kind}
    assert len(INVALID) >= 8


@pytest.mark.parametrize("spec, data", VALID, ids=[spec["name"] for spec, _ in VALID])
def test_a_document_vector_decodes_to_its_fields_and_encodes_to_its_bytes(spec, data):
    frame = frame_of(spec["frame"])
    assert decode(data) == frame
    assert encode(frame) == data
    if "message" in spec:
        assert encode_card(spec["message"], seq=frame.seq, max_text_bytes=spec["max_text_bytes"]) == data


@pytest.mark.parametrize("spec, data", INVALID, ids=[spec["name"] for spec, _ in INVALID])
def test_an_invalid_document_vector_raises_its_error(spec, data):
    with pytest.raises(getattr(frames, spec["error"])) as caught:
        decode(data)
    assert isinstance(caught.value, FrameError)
    assert caught.value.status is Status[spec["status"]]
    assert caught.value.seq == spec["seq"]


def test_the_byte_by_byte_table_is_the_postcard_vector():
    assert "<!-- byte-by-byte: show-card-postcard -->" in DOC
    rows = doc_table("| offset | bytes | field | value |")
    offset, joined = 0, b""
    for row in rows:
        assert int(row[0]) == offset, row
        part = bytes.fromhex(row[1])
        offset, joined = offset + len(part), joined + part
    assert joined == {spec["name"]: data for spec, data in VECTORS}["show-card-postcard"]


@pytest.mark.parametrize("header, names", [("| code | msg_type |", MSG_TYPES), ("| code | effect |", EFFECTS),
                                           ("| code | font |", FONTS)])
def test_the_code_tables_are_the_mailbox_lists(header, names):
    assert [(int(row[0]), row[1]) for row in doc_table(header)] == list(enumerate(names))


def test_the_type_and_status_tables_are_the_enums():
    assert [(int(row[0], 16), row[1]) for row in doc_table("| type | name |")] == [(k.value, k.name) for k in Kind]
    assert [(int(row[0]), row[1]) for row in doc_table("| code | status |")] == [(s.value, s.name) for s in Status]


def test_the_limits_and_timings_in_the_document_are_the_constants():
    for row in doc_table("| what | limit | in frames.py |"):
        numbers = [int(n) for n in re.findall(r"(\d+)(?: ASCII)? bytes", row[1])]
        names = [name for name in re.findall(r"[A-Z_]{4,}", row[2]) if isinstance(getattr(frames, name, None), int)]
        assert [getattr(frames, name) for name in names] == numbers[:len(names)], row
    timings = re.findall(r"(\d+) (?:s|tries in all) \(`([A-Z_]+)`\)", DOC)
    assert {name for _, name in timings} == {"ANSWER_TIMEOUT_S", "SEND_TRIES", "BUSY_DELAY_S", "BUSY_MAX_S"}
    for number, name in timings:
        assert getattr(frames, name) == int(number), name
    assert frames.MAX_PAYLOAD_BYTES == frames.MAX_FRAME_BYTES - 8


# Round trips

@pytest.mark.parametrize("frame", EVERY_KIND, ids=lambda frame: frame.kind.name)
def test_every_kind_of_frame_round_trips(frame):
    data = encode(frame)
    assert decode(data) == frame
    assert data[0] == 0xB7 and data[1] == 0x10 | frame.kind
    assert int.from_bytes(data[2:4], "big") == frame.seq
    assert int.from_bytes(data[4:6], "big") == len(data) - 8


def test_a_card_without_a_pattern_gets_the_documented_defaults():
    frame = card(message(pattern=None), seq=1)
    assert (frame.led_color, frame.effect, frame.font, frame.duration_s, frame.vibrate, frame.sound,
            frame.screensaver, frame.truncated) == (None, "steady", "default", None, False, None, None, False)
    payload = encode(frame)[6:-2]
    assert payload[17:24] == bytes([0xFF, 0xFF, 0xFF, 0, 0, 0, 0])


def test_a_card_takes_every_pattern_field():
    pattern = {"led_color": "#b57edc", "effect": "rainbow", "font": "handwriting", "duration_s": 60, "vibrate": True,
               "sound": "chime", "screensaver": "stars", "from_a_newer_server": 1}
    frame = decode(encode_card(message(pattern=pattern, msg_type="VOICE_TRANSCRIPT"), seq=1))
    assert (frame.led_color, frame.effect, frame.font, frame.duration_s, frame.vibrate, frame.sound,
            frame.screensaver, frame.msg_type) == ("#B57EDC", "rainbow", "handwriting", 60, True, "chime", "stars",
                                                   "VOICE_TRANSCRIPT")


def test_a_card_is_made_from_the_message_object_the_api_gives():
    row = {"id": MESSAGE_ID, "sender_id": "cosmic.fortune", "receiver_id": "00000001", "content": "宜：早睡",
           "msg_type": "COSMIC_BROADCAST", "pattern": check_pattern({"effect": "blink", "led_color": "#ff0000"}),
           "created_at": "2026-02-10T16:00:00.000Z"}
    frame = decode(encode_card(message_view(row), seq=7))
    assert (frame.sender, frame.text, frame.effect, frame.led_color) == ("cosmic.fortune", "宜：早睡", "blink", "#FF0000")


def test_the_longest_card_fits_a_frame():
    frame = card(message("🌙" * 500, {"sound": "s" * 32, "screensaver": "z" * 32},
                         sender_id="a." + "b" * 62), seq=1, max_text_bytes=frames.TEXT_MAX_BYTES)
    data = encode(frame)
    assert len(data) == 8 + 925 and len(data) <= frames.MAX_FRAME_BYTES
    assert decode(data) == frame and frame.truncated and frame.text == "🌙" * 192


def test_a_text_limit_of_zero_sends_no_text():
    frame = decode(encode_card(message(), seq=1, max_text_bytes=0))
    assert frame.text == "" and frame.truncated


@pytest.mark.parametrize("limit", [-1, 769, True, 2.0, None])
def test_the_text_limit_is_checked(limit):
    with pytest.raises(ValueError, match="max_text_bytes"):
        card(message(), seq=1, max_text_bytes=limit)


@pytest.mark.parametrize("frame, field", [
    (Ping(seq=-1), "seq"), (Ping(seq=65536), "seq"), (Ping(seq=True), "seq"),
    (Time(seq=1, unix_s=-1), "unix_s"), (Time(seq=1, unix_s=2 ** 32), "unix_s"),
    (Time(seq=1, unix_s=0, tz_offset_min=1440), "tz_offset_min"), (Time(seq=1, unix_s=0, tz_offset_min=-1440),
                                                                   "tz_offset_min"),
    (Nack(seq=1, status=Status.OK), "status"), (Nack(seq=1, status=3), "status"),
    (ShowCard(seq=1, message_id=MESSAGE_ID.upper(), msg_type="USER_POSTCARD", sender="00000002", text="x"),
     "message_id"),
    (card(message(msg_type="SHOUT"), seq=1), "msg_type"),
    (card(message(sender_id="alice"), seq=1), "sender"),
    (card(message(sender_id="a." + "b" * 63), seq=1), "sender"),
    (ShowCard(seq=1, message_id=MESSAGE_ID, msg_type="USER_POSTCARD", sender="00000002", text="\ud800"), "text"),
    (ShowCard(seq=1, message_id=MESSAGE_ID, msg_type="USER_POSTCARD", sender="00000002", text="x" * 769), "text"),
    (card(message(pattern={"led_color": "#GG0000"}), seq=1), "led_color"),
    (card(message(pattern={"effect": "spin"}), seq=1), "effect"),
    (card(message(pattern={"font": "comic"}), seq=1), "font"),
    (card(message(pattern={"duration_s": 0}), seq=1), "duration_s"),
    (card(message(pattern={"duration_s": 61}), seq=1), "duration_s"),
    (card(message(pattern={"duration_s": True}), seq=1), "duration_s"),
    (card(message(pattern={"vibrate": 1}), seq=1), "vibrate"),
    (card(message(pattern={"sound": ""}), seq=1), "sound"),
    (card(message(pattern={"screensaver": "Stars"}), seq=1), "screensaver"),
])
def test_encode_names_the_field_out_of_range(frame, field):
    with pytest.raises(ValueError, match=field):
        encode(frame)


def test_encode_takes_only_frames():
    with pytest.raises(ValueError, match="not a frame"):
        encode({"type": "PING", "seq": 1})


# Text cut at the device's limit

CLUSTERED = {  # each text as its grapheme clusters
    "chinese": ["今", "日", "宜", "早", "睡", "早", "起"],
    "emoji": ["🌙", "🌟", "✨", "👍"],
    "combining": ["e\u0301", "a\u0300", "o\u0308\u0323", "n"],
    "zwj": ["👨\u200d👩\u200d👧", "h", "i"],
    "skin tone": ["👍🏽", "o", "k", "👋🏿"],
    "flags": ["🇨🇳", "🇯🇵", "🇺🇸"],
    "keycap": ["1\ufe0f\u20e3", "2\ufe0f\u20e3"],
    "variation selector": ["❤\ufe0f", "!"],
    "tag sequence": ["🏴\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f", "x"],
    "mixed": ["晚", "安", " ", "🌙", " ", "c", "a", "f", "e\u0301"],
}


@pytest.mark.parametrize("name", CLUSTERED)
def test_text_is_cut_between_grapheme_clusters_at_every_limit(name):
    clusters = CLUSTERED[name]
    text = "".join(clusters)
    for limit in range(len(text.encode()) + 2):
        cut = truncate_utf8(text, limit)
        whole = ""
        for cluster in clusters:
            if len((whole + cluster).encode()) > limit:
                break
            whole += cluster
        if whole:
            expected = whole
        else:  # not even the first cluster fits: as many of its characters as fit
            expected = ""
            for ch in text:
                if len((expected + ch).encode()) > limit:
                    break
                expected += ch
        assert cut == expected, (limit, cut, expected)
        assert len(cut.encode()) <= limit


@given(st.text(max_size=120), st.integers(0, 500))
@PROPERTY
def test_a_cut_is_a_prefix_within_the_limit_and_never_empty_when_a_character_fits(text, limit):
    cut = truncate_utf8(text, limit)
    assert text.startswith(cut)
    assert len(cut.encode()) <= limit
    if len(text.encode()) <= limit:
        assert cut == text
    elif len(text[0].encode()) <= limit:
        assert cut


def test_a_negative_limit_is_refused():
    with pytest.raises(ValueError):
        truncate_utf8("x", -1)


# Chunks

@pytest.mark.parametrize("size", [20, 180, 512, 1, 7])
def test_chunks_fit_the_write_size_and_join_to_the_frame(size):
    frame = encode(card(message("长" * 250), seq=1, max_text_bytes=700))
    parts = chunks(frame, size)
    assert b"".join(parts) == frame
    assert all(len(part) == size for part in parts[:-1]) and 0 < len(parts[-1]) <= size
    assert len(parts) == -(-len(frame) // size)


def test_an_unknown_write_size_is_20():
    frame = encode(card(message("长" * 100), seq=1))
    assert chunks(frame, None) == chunks(frame, 0) == chunks(frame) == chunks(frame, 20)
    assert chunks(frame, 2000) == [frame]


@pytest.mark.parametrize("size", [-1, -20, 2.5, True])
def test_a_nonsense_write_size_is_refused(size):
    with pytest.raises(ValueError, match="chunk size"):
        chunks(b"\xb7" * 30, size)


# Reassembly (the device's side)

STREAM = [frame_of(spec["frame"]) for spec, _ in VALID]
STREAM_BYTES = b"".join(encode(frame) for frame in STREAM)


def test_frames_fed_one_byte_at_a_time_come_out_whole_at_their_last_byte():
    reassembler, ends, found = Reassembler(), [], []
    for at in range(len(STREAM_BYTES)):
        got = reassembler.feed(STREAM_BYTES[at:at + 1])
        if got:
            ends.append(at + 1)
            found += got
    assert found == STREAM
    lengths = [len(encode(frame)) for frame in STREAM]
    assert ends == [sum(lengths[:i + 1]) for i in range(len(lengths))]
    assert reassembler.held == 0 and reassembler.discarded == 0


@pytest.mark.parametrize("size", [20, 180, 512, len(STREAM_BYTES)])
def test_frames_back_to_back_in_chunks_come_out_in_order(size):
    reassembler = Reassembler()
    assert [frame for part in chunks(STREAM_BYTES, size) for frame in reassembler.feed(part)] == STREAM


def test_bytes_before_a_start_byte_are_dropped_and_counted():
    reassembler = Reassembler()
    assert reassembler.feed(b"\x00\x01garbage" + encode(Ping(seq=1)) + b"\xff" * 5 + encode(Ack(seq=1))) == [
        Ping(seq=1), Ack(seq=1)]
    assert reassembler.discarded == 14
    assert reassembler.feed(b"\x00" * 10_000) == [] and reassembler.held == 0


def test_after_a_lost_chunk_the_next_frames_are_found_again():
    """A write lost mid-frame: the frame fails its CRC, and the PING and the resend inside it are found."""
    postcard = encode(card(message(), seq=2))
    assert postcard.count(0xB7) == 1  # no stray start byte inside, so what follows is exact
    reassembler = Reassembler()
    found = reassembler.feed(postcard[:20] + postcard[40:])
    found += reassembler.feed(encode(Ping(seq=3)))
    found += reassembler.feed(postcard)  # the relay's resend after its timeout
    assert [type(item) for item in found] == [BadCrc, Ping, ShowCard]
    assert found[0].seq == 2 and found[0].status is Status.BAD_CRC
    assert found[2] == card(message(), seq=2)


def test_a_frame_too_long_to_hold_is_answered_and_skipped_without_storing_it():
    reassembler = Reassembler(max_payload=40)
    postcard = encode(card(message(), seq=2))  # a 48-byte payload
    found = []
    for part in chunks(postcard + encode(Ping(seq=3)), 5):
        found += reassembler.feed(part)
        assert reassembler.held < frames.HEADER_BYTES + 40 + 2
    assert [type(item) for item in found] == [TooLong, Ping]
    assert (found[0].seq, found[0].status) == (2, Status.TOO_LONG)


def test_errors_come_out_with_their_seq_and_the_stream_goes_on():
    reassembler = Reassembler()
    found = reassembler.feed(envelope(0x15, seq=5) + envelope(0x23, seq=6) + envelope(0x12, b"\x00", seq=7)
                             + encode(Clear(seq=8)))
    assert [(type(item), item.seq) for item in found] == [(UnknownType, 5), (UnknownVersion, 6), (BadPayload, 7),
                                                          (Clear, 8)]
    assert [item.status for item in found[:3]] == [Status.UNKNOWN_TYPE, Status.UNKNOWN_VERSION, Status.MALFORMED]


def test_reset_forgets_a_partial_frame():
    reassembler = Reassembler()
    assert reassembler.feed(encode(card(message(), seq=1))[:30]) == [] and reassembler.held == 30
    reassembler.reset()
    assert reassembler.held == 0
    assert reassembler.feed(encode(Ping(seq=0))) == [Ping(seq=0)]


def test_a_reassembler_limit_must_fit_the_length_field():
    for limit in (-1, 65536, True):
        with pytest.raises(ValueError):
            Reassembler(max_payload=limit)


# Decode errors, one by one

PING = encode(Ping(seq=9))


@pytest.mark.parametrize("data, error", [
    (b"", BadStart), (b"\x00" + PING[1:], BadStart), (PING[1:], BadStart),
    (PING[:3], Truncated), (PING[:-1], Truncated), (envelope(0x11, card_payload())[:-5], Truncated),
    (PING + b"\x00", TrailingBytes), (PING + PING, TrailingBytes),
    (b"\xb7\x13\x00\x09\x03\xf9" + bytes(1019), TooLong),
    (PING[:-1] + bytes([PING[-1] ^ 0x80]), BadCrc), (PING[:2] + b"\x00\x08" + PING[4:], BadCrc),
    (envelope(0x23)[:-1] + b"\x00", BadCrc),  # the CRC is checked before the version
    (envelope(0x03), UnknownVersion), (envelope(0x23), UnknownVersion), (envelope(0xF3), UnknownVersion),
    *((envelope(0x10 | code), UnknownType) for code in (0x0, 0x5, 0x6, 0x7, 0xA, 0xB, 0xC, 0xD, 0xE, 0xF)),
    (envelope(0x12, b"\x00"), BadPayload), (envelope(0x13, b"\x00"), BadPayload), (envelope(0x18, b"\x00"), BadPayload),
    (envelope(0x14, bytes(5)), BadPayload), (envelope(0x14, bytes(7)), BadPayload),
    (envelope(0x14, bytes(4) + (1440).to_bytes(2, "big")), BadPayload),
    (envelope(0x14, bytes(4) + (-1440).to_bytes(2, "big", signed=True)), BadPayload),
    (envelope(0x19, b""), BadPayload), (envelope(0x19, b"\x00"), BadPayload), (envelope(0x19, b"\x07"), BadPayload),
    (envelope(0x19, b"\x03\x00"), BadPayload),
    (envelope(0x11, bytes(10)), BadPayload),
    (envelope(0x11, card_payload(msg_type=3)), BadPayload),
    (envelope(0x11, card_payload(effect=5)), BadPayload),
    (envelope(0x11, card_payload(font=5)), BadPayload),
    (envelope(0x11, card_payload(duration=61)), BadPayload),
    (envelope(0x11, card_payload(flags=0x08)), BadPayload),
    (envelope(0x11, card_payload(flags=0x80)), BadPayload),
    (envelope(0x11, card_payload(flags=0x00)), BadPayload),  # a colour other than FF FF FF without its flag
    (envelope(0x11, card_payload(sender=b"")), BadPayload),
    (envelope(0x11, card_payload(sender="中".encode())), BadPayload),
    (envelope(0x11, card_payload(sender=b"alice")), BadPayload),
    (envelope(0x11, card_payload(sender=b"a." + b"b" * 63)), BadPayload),
    (envelope(0x11, card_payload(sound=b"Chime")), BadPayload),
    (envelope(0x11, card_payload(screensaver=b"-x")), BadPayload),
    (envelope(0x11, card_payload(text=b"\xc3\x28")), BadPayload),
    (envelope(0x11, card_payload(text=b"\xc0\x80")), BadPayload),  # an overlong NUL
    (envelope(0x11, card_payload(text=b"\xed\xa0\x80")), BadPayload),  # an encoded surrogate
    (envelope(0x11, card_payload(text=b"\xf4\x90\x80\x80")), BadPayload),  # past U+10FFFF
    (envelope(0x11, card_payload(text="中文"[:1].encode()[:2])), BadPayload),  # a character cut in two
    (envelope(0x11, card_payload(text=b"a" * 769)), BadPayload),
    (envelope(0x11, card_payload(text=b"hi", text_length=5)), BadPayload),
    (envelope(0x11, card_payload() + b"\x00"), BadPayload),
])
def test_decode_says_what_is_wrong(data, error):
    with pytest.raises(error) as caught:
        decode(data)
    assert isinstance(caught.value, FrameError)
    assert caught.value.seq == (None if error in (BadStart,) or len(data) < 6 else int.from_bytes(data[2:4], "big"))


def test_the_envelope_of_a_card_payload_written_by_hand_decodes():
    """The hand-written payload of the error cases is a good card when nothing is wrong with it."""
    frame = decode(envelope(0x11, card_payload(sound=b"chime", duration=8, flags=0x07)))
    assert (frame.text, frame.sound, frame.duration_s, frame.vibrate, frame.truncated, frame.led_color) == (
        "hi", "chime", 8, True, True, "#FF8800")
    assert frame.message_id == "00010203-0405-0607-0809-0a0b0c0d0e0f"


def test_a_reader_with_a_smaller_buffer_refuses_a_longer_payload():
    with pytest.raises(TooLong) as caught:
        decode(encode(card(message(), seq=4)), max_payload=40)
    assert caught.value.seq == 4 and caught.value.status is Status.TOO_LONG


def test_every_error_maps_to_the_nack_status_the_document_gives():
    statuses = {BadStart: Status.MALFORMED, Truncated: Status.MALFORMED, TrailingBytes: Status.MALFORMED,
                TooLong: Status.TOO_LONG, BadCrc: Status.BAD_CRC, UnknownVersion: Status.UNKNOWN_VERSION,
                UnknownType: Status.UNKNOWN_TYPE, BadPayload: Status.MALFORMED}
    assert set(statuses) == set(FrameError.__subclasses__())
    for error, status in statuses.items():
        assert error("x").status is status


# Properties

seqs = st.integers(0, 0xFFFF)
names = st.from_regex(SHORT_NAME, fullmatch=True)
senders = st.one_of(st.from_regex(BIPUPU_ID, fullmatch=True),
                    st.from_regex(r"[a-z][a-z0-9_]{0,8}(\.[a-z][a-z0-9_]{0,8}){1,3}", fullmatch=True))
cards = st.builds(
    ShowCard, seq=seqs, message_id=st.uuids().map(str), msg_type=st.sampled_from(MSG_TYPES), sender=senders,
    text=st.text(max_size=192), led_color=st.none() | st.from_regex(r"#[0-9A-F]{6}", fullmatch=True),
    effect=st.sampled_from(EFFECTS), font=st.sampled_from(FONTS), duration_s=st.none() | st.integers(1, 60),
    vibrate=st.booleans(), sound=st.none() | names, screensaver=st.none() | names, truncated=st.booleans())
any_frame = st.one_of(
    cards, st.builds(Clear, seq=seqs), st.builds(Ping, seq=seqs), st.builds(Ack, seq=seqs),
    st.builds(Time, seq=seqs, unix_s=st.integers(0, 2 ** 32 - 1), tz_offset_min=st.integers(-1439, 1439)),
    st.builds(Nack, seq=seqs, status=st.sampled_from([status for status in Status if status is not Status.OK])))
patterns = st.fixed_dictionaries({}, optional={
    "led_color": st.from_regex(r"#[0-9A-Fa-f]{6}", fullmatch=True), "effect": st.sampled_from(EFFECTS),
    "font": st.sampled_from(FONTS), "duration_s": st.integers(1, 60), "vibrate": st.booleans(),
    "sound": names, "screensaver": names})


@given(any_frame)
@PROPERTY
def test_any_frame_round_trips(frame):
    assert decode(encode(frame)) == frame


@given(patterns, st.text(min_size=1, max_size=500), st.integers(0, frames.TEXT_MAX_BYTES), seqs)
@PROPERTY
def test_any_message_shows_its_pattern_and_the_start_of_its_text(pattern, content, limit, seq):
    stored = orjson.loads(check_pattern(pattern))
    frame = decode(encode_card(message(content, stored), seq=seq, max_text_bytes=limit))
    assert content.startswith(frame.text) and len(frame.text.encode()) <= limit
    assert frame.truncated == (frame.text != content)
    assert frame.led_color == stored.get("led_color")
    assert (frame.effect, frame.font) == (stored.get("effect", "steady"), stored.get("font", "default"))
    assert (frame.duration_s, frame.vibrate) == (stored.get("duration_s"), stored.get("vibrate", False))
    assert (frame.sound, frame.screensaver) == (stored.get("sound"), stored.get("screensaver"))


@given(st.binary(max_size=1100))
@PROPERTY
def test_decode_of_any_bytes_raises_nothing_but_frame_error(data):
    try:
        decode(data)
    except FrameError:
        pass
    try:
        decode(b"\xb7" + data)
    except FrameError:
        pass


@given(st.integers(0, 255), st.binary(max_size=300))
@PROPERTY
def test_a_frame_with_any_payload_either_fails_cleanly_or_is_the_one_encoding_of_its_fields(byte1, payload):
    data = envelope(byte1, payload)
    try:
        frame = decode(data)
    except FrameError:
        return
    assert encode(frame) == data


@given(cards, st.data())
@PROPERTY
def test_a_damaged_card_either_fails_cleanly_or_is_the_one_encoding_of_its_fields(frame, data):
    payload = bytearray(encode(frame)[6:-2])
    for _ in range(data.draw(st.integers(1, 4))):
        payload[data.draw(st.integers(0, len(payload) - 1))] = data.draw(st.integers(0, 255))
    damaged = envelope(0x11, bytes(payload), seq=frame.seq)
    try:
        decoded = decode(damaged)
    except FrameError:
        return
    assert encode(decoded) == damaged


@given(st.lists(any_frame, min_size=1, max_size=6), st.integers(1, 600),
       st.lists(st.binary(max_size=30).map(lambda b: b.replace(b"\xb7", b"")), min_size=7, max_size=7))
@PROPERTY
def test_a_stream_of_frames_with_noise_between_comes_out_exactly(stream, size, noise):
    data = b"".join(noise[i] + encode(frame) for i, frame in enumerate(stream)) + noise[-1]
    reassembler = Reassembler()
    found = [item for part in chunks(data, size) for item in reassembler.feed(part)]
    assert found == stream
    assert reassembler.discarded == sum(len(part) for part in noise[:len(stream)]) + len(noise[-1])


@given(st.lists(st.binary(min_size=1, max_size=200), max_size=20))
@PROPERTY
def test_a_reassembler_fed_anything_holds_less_than_a_frame_and_raises_nothing(writes):
    reassembler = Reassembler()
    for write in writes:
        for item in reassembler.feed(write):
            assert isinstance(item, (FrameError, *frames.FRAMES.values()))
        assert reassembler.held < frames.MAX_FRAME_BYTES

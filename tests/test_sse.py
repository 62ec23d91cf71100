"""The incremental SSE decoder: however the bytes are split, the events are those of the spec."""

from __future__ import annotations

import re
from collections.abc import Iterable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llm_cache_router_integrations.providers.sse import SSEDecoder, SSEEvent


def decode(pieces: Iterable[bytes]) -> list[SSEEvent]:
    """Feed ``pieces`` one by one, then flush."""
    decoder = SSEDecoder()
    events: list[SSEEvent] = []
    for piece in pieces:
        events.extend(decoder.feed(piece))
    return events + decoder.flush()


def split_at(data: bytes, cuts: Iterable[int]) -> list[bytes]:
    """``data`` cut at the given offsets."""
    points = sorted(set(cuts))
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


def reference(data: bytes) -> list[SSEEvent]:
    """A direct reading of the WHATWG event-stream algorithm, on the whole stream at once."""
    text = data.decode("utf-8", "replace").removeprefix("\ufeff")
    lines = re.split(r"\r\n|\r|\n", text)[:-1]  # the last piece is unterminated: discarded
    events: list[SSEEvent] = []
    data_lines: list[str] | None = None
    event, last_id, retry = "", None, None
    for line in lines:
        if line == "":
            if data_lines is not None:
                events.append(SSEEvent("\n".join(data_lines), event or "message", last_id, retry))
            data_lines, event = None, ""
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data_lines = [*(data_lines or []), value]
        elif name == "event":
            event = value
        elif name == "id" and "\0" not in value:
            last_id = value
        elif name == "retry" and re.fullmatch(r"[0-9]+", value):
            retry = int(value)
    return events


STREAM = (
    "\ufeff: welcome\n"
    "event: greeting\r\n"
    "data: héllo 👋\r\n"
    "data: second line\r\n"
    "id: 7\r\n\r\n"
    ": keep-alive\r\r"
    'data:{"n": 1}\r'
    "retry: 1500\r\r"
    "data\n\n"
    "data: unterminated"
).encode()
EXPECTED = [
    SSEEvent("héllo 👋\nsecond line", "greeting", "7", None),
    SSEEvent('{"n": 1}', "message", "7", 1500),
    SSEEvent("", "message", "7", 1500),
]


def test_reference_reading_of_the_fixture() -> None:
    assert reference(STREAM) == EXPECTED
    assert decode([STREAM]) == EXPECTED


def test_every_split_in_two_gives_the_same_events() -> None:
    for cut in range(len(STREAM) + 1):
        assert decode(split_at(STREAM, [cut])) == EXPECTED, cut


def test_every_split_in_three_gives_the_same_events() -> None:
    for first in range(0, len(STREAM) + 1, 3):
        for second in range(first, len(STREAM) + 1):
            assert decode(split_at(STREAM, [first, second])) == EXPECTED, (first, second)


def test_byte_by_byte() -> None:
    assert decode(STREAM[i : i + 1] for i in range(len(STREAM))) == EXPECTED


def test_multi_line_data_is_joined_with_lf() -> None:
    assert decode([b"data: a\ndata:b\ndata:  c\n\n"]) == [SSEEvent("a\nb\n c")]


def test_named_events_and_event_name_reset() -> None:
    events = decode([b"event: delta\ndata: 1\n\ndata: 2\n\n"])
    assert [(e.event, e.data) for e in events] == [("delta", "1"), ("message", "2")]


def test_event_without_data_is_not_dispatched_and_forgets_its_name() -> None:
    assert decode([b"event: ping\n\ndata: x\n\n"]) == [SSEEvent("x", "message")]


def test_id_persists_and_nul_ids_are_ignored() -> None:
    events = decode([b"id: 1\ndata: a\n\ndata: b\n\nid: bad\x00id\ndata: c\n\nid\ndata: d\n\n"])
    assert [e.id for e in events] == ["1", "1", "1", ""]


@pytest.mark.parametrize("value", ["abc", "12a", "-5", "1.5", "\u00b2", "\u0663", ""])
def test_retry_needs_ascii_digits(value: str) -> None:
    events = decode([f"retry: {value}\ndata: x\n\n".encode()])
    assert events == [SSEEvent("x")]


def test_comments_and_keep_alives_produce_nothing() -> None:
    assert decode([b": ping\n\n:\n\n: another\n"]) == []
    assert decode([b": ping\n", b"data: x\n", b": inside\n\n"]) == [SSEEvent("x")]


@pytest.mark.parametrize("ending", ["\n", "\r\n", "\r"])
def test_line_endings(ending: str) -> None:
    text = f"data: a{ending}data: b{ending}{ending}event: e{ending}data: c{ending}{ending}"
    assert decode([text.encode()]) == [SSEEvent("a\nb"), SSEEvent("c", "e")]


def test_crlf_split_between_two_feeds() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r") == []
    assert decoder.feed(b"\ndata: b\r") == []
    assert decoder.feed(b"\n\r") == [SSEEvent("a\nb")]
    assert decoder.feed(b"\n") == []  # the LF of that CRLF, not a second blank line
    assert decoder.feed(b"data: c\r\n\r\n") == [SSEEvent("c")]


def test_empty_feed_between_cr_and_lf() -> None:
    # Regression: an empty read between the CR and the LF of one CRLF made the LF a blank line.
    assert decode([b"data: a\r", b"", b"\ndata: b\r\n\r\n"]) == [SSEEvent("a\nb")]


def test_multibyte_character_split_across_feeds() -> None:
    data = "data: 日本 é 👋\n\n".encode()
    for cut in range(len(data) + 1):
        assert decode(split_at(data, [cut])) == [SSEEvent("日本 é 👋")]


def test_byte_order_mark() -> None:
    assert decode([b"\xef\xbb\xbfdata: x\n\n"]) == [SSEEvent("x")]
    assert decode([b"\xef", b"\xbb", b"\xbfdata: x\n\n"]) == [SSEEvent("x")]
    # Only a leading BOM is special: later it is part of a (then unknown) field name.
    assert decode([b"data: x\n\n\xef\xbb\xbfdata: y\n\n"]) == [SSEEvent("x")]
    # A leading BOM is removed once only.
    assert decode(["\ufeff\ufeffdata: x\n\n".encode()]) == []


def test_trailing_unterminated_event_is_dropped_at_flush() -> None:
    assert decode([b"data: done\n\ndata: partial"]) == [SSEEvent("done")]
    assert decode([b"data: done\n\ndata: partial\n"]) == [SSEEvent("done")]
    decoder = SSEDecoder()
    assert decoder.feed(b'data: {"half": ') == []
    assert decoder.flush() == []


def test_fields_without_colon() -> None:
    assert decode([b"data\n\n"]) == [SSEEvent("")]
    assert decode([b"data\ndata\n\n"]) == [SSEEvent("\n")]
    assert decode([b"event\ndata: x\n\n"]) == [SSEEvent("x", "message")]
    assert decode([b"unknown\ndata: x\n\n"]) == [SSEEvent("x")]


def test_only_one_space_after_the_colon_is_removed() -> None:
    assert decode([b"data:x\n\ndata: x\n\ndata:  x\n\n"]) == [
        SSEEvent("x"),
        SSEEvent("x"),
        SSEEvent(" x"),
    ]


def test_invalid_utf8_is_replaced_not_fatal() -> None:
    assert decode([b"data: a\xffb\n\n"]) == [SSEEvent("a\ufffdb")]


# ---------------------------------------------------------------- property-based

_FIELD = st.sampled_from(["data", "event", "id", "retry", "", "dat", "unknown"])
_VALUE = st.text(
    alphabet=st.characters(blacklist_characters="\r\n", blacklist_categories=["Cs"]), max_size=12
)
_SEPARATOR = st.sampled_from([": ", ":", "", ":  "])
_ENDING = st.sampled_from(["\n", "\r\n", "\r"])
_LINE = st.tuples(_FIELD, _SEPARATOR, _VALUE, _ENDING).map(lambda t: "".join(t))
_BLANK = _ENDING
_STREAMS = st.lists(st.one_of(_LINE, _BLANK, _BLANK), max_size=25).map("".join)


@settings(max_examples=300, deadline=None)
@given(text=_STREAMS, bom=st.booleans(), cuts=st.lists(st.integers(min_value=0), max_size=8))
def test_any_stream_any_split_matches_the_reference(text: str, bom: bool, cuts: list[int]) -> None:
    data = (("\ufeff" if bom else "") + text).encode()
    pieces = split_at(data, [c % (len(data) + 1) for c in cuts])
    assert decode(pieces) == reference(data)


@settings(deadline=None)
@given(payloads=st.lists(st.text(max_size=20).map(lambda s: s.replace("\r", "").replace("\n", ""))))
def test_data_round_trips(payloads: list[str]) -> None:
    data = "".join(f"data: {p}\n\n" for p in payloads).encode()
    assert [e.data for e in decode(data[i : i + 5] for i in range(0, len(data), 5))] == payloads

"""The incremental NDJSON decoder: complete lines become objects, however the bytes are split."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llm_cache_router_integrations.providers.ndjson import NDJSONDecoder, NDJSONError


def decode(pieces: Iterable[bytes]) -> list[dict[str, Any]]:
    """Feed ``pieces`` one by one, then flush."""
    decoder = NDJSONDecoder()
    objects: list[dict[str, Any]] = []
    for piece in pieces:
        objects.extend(decoder.feed(piece))
    return objects + decoder.flush()


STREAM = (
    '{"model": "llama3", "message": {"content": "héllo 👋"}, "done": false}\n'
    "\n"
    '   {"message": {"content": " world"}, "done": false}  \r\n'
    '{"done": true, "eval_count": 12}'
).encode()
EXPECTED = [
    {"model": "llama3", "message": {"content": "héllo 👋"}, "done": False},
    {"message": {"content": " world"}, "done": False},
    {"done": True, "eval_count": 12},
]


def test_whole_stream() -> None:
    assert decode([STREAM]) == EXPECTED


def test_every_split_in_two() -> None:
    for cut in range(len(STREAM) + 1):
        assert decode([STREAM[:cut], STREAM[cut:]]) == EXPECTED, cut


def test_byte_by_byte() -> None:
    assert decode(STREAM[i : i + 1] for i in range(len(STREAM))) == EXPECTED


def test_objects_arrive_as_soon_as_their_line_ends() -> None:
    decoder = NDJSONDecoder()
    assert decoder.feed(b'{"a": 1}\n{"b"') == [{"a": 1}]
    assert decoder.feed(b": 2}") == []
    assert decoder.feed(b"\n") == [{"b": 2}]
    assert decoder.flush() == []


def test_blank_and_whitespace_lines_are_skipped() -> None:
    assert decode([b'\n\n  \n\t\r\n{"a": 1}\n\n']) == [{"a": 1}]
    assert decode([b""]) == []
    assert decode([b"   "]) == []


def test_last_line_without_newline_is_parsed_at_flush() -> None:
    decoder = NDJSONDecoder()
    assert decoder.feed(b'{"done": true}') == []
    assert decoder.flush() == [{"done": True}]
    assert decoder.flush() == []


@pytest.mark.parametrize("line", [b'{"a": ', b"not json", b'{"a": 1}}', b"{'a': 1}"])
def test_malformed_line_raises(line: bytes) -> None:
    with pytest.raises(NDJSONError, match="malformed"):
        decode([b'{"ok": 1}\n' + line + b"\n"])


def test_malformed_last_line_raises_at_flush() -> None:
    decoder = NDJSONDecoder()
    assert decoder.feed(b'{"ok": 1}\n{"cut') == [{"ok": 1}]
    with pytest.raises(NDJSONError):
        decoder.flush()


@pytest.mark.parametrize("line", [b"[1, 2]", b'"text"', b"42", b"null", b"true"])
def test_non_object_line_raises(line: bytes) -> None:
    with pytest.raises(NDJSONError, match="not an object"):
        decode([line + b"\n"])


def test_invalid_utf8_raises() -> None:
    with pytest.raises(NDJSONError):
        decode([b'{"a": "\xff"}\n'])


def test_error_is_a_value_error_with_the_line() -> None:
    with pytest.raises(ValueError, match="oops"):
        decode([b"oops\n"])


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
_OBJECTS = st.lists(st.dictionaries(st.text(max_size=6), _JSON, max_size=4), max_size=8)


@settings(deadline=None)
@given(
    objects=_OBJECTS,
    ending=st.sampled_from(["\n", "\r\n"]),
    final_newline=st.booleans(),
    ascii_only=st.booleans(),
    cuts=st.lists(st.integers(min_value=0), max_size=6),
)
def test_any_objects_any_split(
    objects: list[dict[str, Any]],
    ending: str,
    final_newline: bool,
    ascii_only: bool,
    cuts: list[int],
) -> None:
    text = ending.join(json.dumps(o, ensure_ascii=ascii_only) for o in objects)
    data = (text + (ending if final_newline and objects else "")).encode()
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    assert decode(pieces) == objects

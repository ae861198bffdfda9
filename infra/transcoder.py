"""The event store's JSON: the library's transcoder, with user data kept as data.

eventsourcing's JSONTranscoder writes a value of a registered type (UUID, datetime,
Decimal) as {"_type_": name, "_data_": ...} and reads *every* JSON object with exactly
those two keys back through the transcoding of that name. Events also carry free-form JSON
that users and dialogs control (session metadata, memory values, a dialog's variables,
table rows...): an object of that shape there would come back as something else, or not
at all (an unknown name raises TranscodingNotRegisteredError, which stalls every reader of
the log and makes the aggregate unloadable). `DataTranscoder` keeps such data as data:

- encode: a dict whose keys are exactly "_type_" and "_data_" is written as the tag of a
  transcoding of our own, {"_type_": "gb_dict", "_data_": [["_type_", x], ["_data_", y]]}
  (a list of pairs, which the decoder never takes for a tag), and read back as that dict.
  An escaped dict has that shape itself, so a user's dict that looks escaped is escaped in
  turn: the mapping is reversible at any depth. Values of registered types still round-trip.
- encode refuses text no store can hold (U+0000 or a lone surrogate, see domain.text) with
  commands.ports.UnstorableText, naming where it is.
- decode of events saved before escaping existed (plain user dicts): a tag whose name is
  not registered, or whose data its transcoding refuses, can only be such data; it decodes
  as the plain dict it was instead of failing.

The encode path runs for every event saved, so the walk over the state runs only when the
encoded JSON shows it is needed (see `encode`); most events cost one extra substring count.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from eventsourcing.persistence import JSONTranscoder, Transcoding

from commands.ports import UnstorableText
from domain.text import clean, storable

TYPE_KEY = "_type_"
DATA_KEY = "_data_"
_TAG_KEYS = frozenset((TYPE_KEY, DATA_KEY))
_TAG_KEY_TEXT = f'"{TYPE_KEY}":'  # how the key appears in our compact JSON
_KEY_CHARS = 40  # of a key, in the path of an error
_NUL_TEXT = "\\u0000"  # how json writes U+0000 (always escaped, like every control char)


class EscapedDict:
    """A user dict shaped like a type tag, on its way to the encoder."""

    __slots__ = ("pairs",)

    def __init__(self, pairs: list[list[Any]]) -> None:
        self.pairs = pairs


class EscapedDictAsPairs(Transcoding):
    """Writes an escaped dict as its [key, value] pairs; reads them back as the dict."""

    type = EscapedDict
    name = "gb_dict"

    def encode(self, obj: EscapedDict) -> list[list[Any]]:
        return obj.pairs

    def decode(self, data: Any) -> dict[str, Any]:
        if not isinstance(data, list) or not all(
            isinstance(p, list) and len(p) == 2 and isinstance(p[0], str) for p in data
        ):
            raise ValueError("not the pairs of an escaped dict")
        return dict(data)


class DataTranscoder(JSONTranscoder):
    """The library's JSONTranscoder (same format, same registered transcodings) for which
    free-form dicts are never type tags, and which refuses unstorable text."""

    def __init__(self) -> None:
        super().__init__()
        self.register(EscapedDictAsPairs())
        self._tags = threading.local()  # tags written by the current thread's encode
        self._counting = json.JSONEncoder(
            default=self._count_tag, separators=(",", ":"), ensure_ascii=False
        )

    def encode(self, obj: Any) -> bytes:
        # Fast path: encode as the library does (same separators, same tags), counting the
        # tags written for values of registered types. Every other `"_type_":` in the
        # output is the key of a dict in the data (or the tail of a key ending in
        # `"_type_`: a harmless false alarm); when there is none, nothing needs escaping.
        # json writes U+0000 as \u0000 (a false alarm when a text holds those six
        # characters), and a lone surrogate makes the UTF-8 encoding fail. Only then does
        # `_escaped` walk the data.
        self._tags.count = 0
        text = self._counting.encode(obj)
        if text.count(_TAG_KEY_TEXT) != self._tags.count or _NUL_TEXT in text:
            text = self.encoder.encode(_escaped(obj))
        try:
            return text.encode("utf8")
        except UnicodeEncodeError:
            _escaped(obj)  # raises UnstorableText, with the path of the text
            raise

    def _count_tag(self, o: Any) -> dict[str, Any]:
        self._tags.count += 1
        return self._encode_obj(o)

    def _decode_obj(self, d: dict[str, Any]) -> Any:
        if len(d) != 2 or TYPE_KEY not in d or DATA_KEY not in d:
            return d
        name = d[TYPE_KEY]
        transcoding = self.names.get(name) if isinstance(name, str) else None
        if transcoding is None:
            return d  # user data saved before escaping existed
        try:
            return transcoding.decode(d[DATA_KEY])
        except Exception:  # noqa: BLE001 - any refusal means the same
            return d  # user data saved before escaping existed, shaped like a known tag


def _escaped(value: Any) -> Any:
    """`value` with every tag-shaped dict escaped; raises UnstorableText on bad text."""
    try:
        return _escape(value)
    except _Unstorable as e:
        raise UnstorableText(format_path(e.path)) from None


def _escape(value: Any) -> Any:
    if isinstance(value, str):
        if not storable(value):
            raise _Unstorable
        return value
    if isinstance(value, dict):
        items = []
        for key, item in value.items():
            try:
                if isinstance(key, str) and not storable(key):
                    raise _Unstorable
                items.append((key, _escape(item)))
            except _Unstorable as e:
                e.path.insert(0, str(key))
                raise
        if len(items) == 2 and value.keys() == _TAG_KEYS:
            return EscapedDict([[key, item] for key, item in items])
        return dict(items)
    if isinstance(value, list | tuple):
        escaped = []
        for i, item in enumerate(value):
            try:
                escaped.append(_escape(item))
            except _Unstorable as e:
                e.path.insert(0, i)
                raise
        return escaped
    return value  # numbers, booleans, None, values of registered types


class _Unstorable(Exception):
    """Bad text found; `path` is filled in on the way out of the walk."""

    def __init__(self) -> None:
        super().__init__()
        self.path: list[str | int] = []


def format_path(path: list[str | int]) -> str:
    """["metadata", "tags", 2] -> "metadata.tags[2]" (keys cleaned and cut short: a bad key
    is the last part of its own path, and the path goes into an error message)."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            key = clean(part if len(part) <= _KEY_CHARS else part[: _KEY_CHARS - 1] + "…")
            text += f".{key}" if text else key
    return text or "the event"

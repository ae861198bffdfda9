"""Runtime values and the rules that combine them.

Values are plain JSON data (None, bool, int, float, str, list, dict with str keys) so that a
suspended dialog's variables serialise as they are. Containers have value semantics: the
machine copies a list or an object when it is stored, which keeps a state that went through
JSON behaving exactly like one that did not (no shared references to lose).
"""

from __future__ import annotations

import json
import math
import re
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import TypeGuard

from domain.basic.errors import BasicRuntimeError
from domain.basic.limits import Limits

Value = None | bool | int | float | str | list["Value"] | dict[str, "Value"]

_INT_LIMIT = 2**63
_NUMBER_TEXT = re.compile(r"\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*")


def type_name(value: Value) -> str:
    """The dialect's name for a value's kind, for error messages."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    return "an object"


def is_number(value: Value) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def number_from_text(text: str) -> int | float | None:
    """A number written as text ('42', ' 3.5 '), or None; used where BASIC coerces text."""
    if not _NUMBER_TEXT.fullmatch(text):
        return None
    cleaned = text.strip()
    if re.fullmatch(r"[+-]?\d+", cleaned):
        return int(cleaned)
    result = float(cleaned)
    return result if math.isfinite(result) else None


def to_number(value: Value, what: str = "a number") -> int | float:
    """Coerce for arithmetic: numbers and numeric text; anything else is a runtime error."""
    if is_number(value):
        return value
    if isinstance(value, str):
        parsed = number_from_text(value)
        if parsed is not None:
            return parsed
        shown = value if len(value) <= 20 else value[:20] + "..."
        raise BasicRuntimeError(f'expected {what}, got text "{shown}"')
    raise BasicRuntimeError(f"expected {what}, got {type_name(value)}")


def to_int(value: Value, what: str = "a whole number") -> int:
    number = to_number(value, what)
    if isinstance(number, float):
        if not number.is_integer():
            raise BasicRuntimeError(f"expected {what}, got {format_number(number)}")
        return int(number)
    return number


def checked_number(value: int | float) -> int | float:
    """Keep results JSON-safe and bounded: huge ints become floats, inf and NaN are errors."""
    if isinstance(value, int):
        if -_INT_LIMIT < value < _INT_LIMIT:
            return value
        value = float(value)
    if not math.isfinite(value):
        raise BasicRuntimeError("number out of range")
    return value


def format_number(value: int | float) -> str:
    if isinstance(value, int):
        return str(value)
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return format(value, ".15g")


def to_text(value: Value) -> str:
    """How a value reads in a message: NULL is empty, booleans are true/false, containers JSON."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return format_number(value)
    if isinstance(value, str):
        return value
    return json_text(value, CONTAINER_TEXT_BYTES)


# A list or object shown as text (TALK, `+`, templates) is written out only when its JSON
# stays under this; larger text could not be kept anyway (Limits.max_string, event limits).
CONTAINER_TEXT_BYTES = 1_048_576


def json_text(value: Value, max_bytes: int) -> str:
    """`value` as JSON text, refused before it is built when it would pass max_bytes."""
    if encoded_size(value, max_bytes) > max_bytes:
        raise BasicRuntimeError(
            f"the value is too large to write out as text ({max_bytes:,} bytes at most)"
        )
    return json.dumps(value, ensure_ascii=False)


def string_size(text: str) -> int:
    """Bytes of `text` as a JSON string in UTF-8 (quotes and escapes included)."""
    if text.isascii():
        if text.isprintable():
            return len(text) + 2 + text.count('"') + text.count("\\")
        return len(json.dumps(text))
    return len(json.dumps(text, ensure_ascii=False).encode("utf-8", "surrogatepass"))


def encoded_size(value: object, limit: int | None = None) -> int:
    """Bytes of `value` as compact JSON in UTF-8 (the way events store it), counted without
    writing the JSON out; the count stops as soon as it passes `limit`, so a huge value
    costs no more than a value of the limit's size."""
    total = 0
    stack: list[object] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            total += string_size(item)
        elif item is None or item is True:
            total += 4
        elif item is False:
            total += 5
        elif isinstance(item, int | float):
            total += len(repr(item))
        elif isinstance(item, list | tuple):
            total += 2 + max(len(item) - 1, 0)  # brackets and commas
            stack.extend(item)
        elif isinstance(item, dict):
            total += 2 + len(item) + max(len(item) - 1, 0)  # braces, colons and commas
            for key, element in item.items():
                stack.append(str(key))
                stack.append(element)
        else:
            total += string_size(str(item))
        if limit is not None and total > limit:
            return total
    return total


def value_bytes(text: str) -> int:
    """About what a text value weighs in a stored value: its UTF-8 bytes (escapes aside)."""
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def value_too_large(limits: Limits) -> BasicRuntimeError:
    return BasicRuntimeError(
        f"a value larger than {limits.max_value_bytes:,} bytes"
        " (the limit is GB_TURN_MAX_VALUE_BYTES)"
    )


def truthy(value: Value) -> bool:
    """Empty text, 0, empty list, empty object and NULL are false (`IF NOT category THEN`)."""
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value != 0
    return len(value) > 0


def equals(left: Value, right: Value) -> bool:
    """`=`: numbers compare with numeric text (answers arrive as text), otherwise exact."""
    if left is None or right is None:
        return left is None and right is None
    if isinstance(left, bool) or isinstance(right, bool):
        return isinstance(left, bool) and isinstance(right, bool) and left == right
    if is_number(left) and isinstance(right, str):
        return number_from_text(right) == left
    if isinstance(left, str) and is_number(right):
        return number_from_text(left) == right
    return left == right


def compare(left: Value, right: Value) -> int:
    """Ordering for < > <= >=: numbers (numeric text counts) or text; else a runtime error."""
    a: Value = left
    b: Value = right
    if is_number(a) and isinstance(b, str):
        b = number_from_text(b) if number_from_text(b) is not None else b
    elif isinstance(a, str) and is_number(b):
        a = number_from_text(a) if number_from_text(a) is not None else a
    if is_number(a) and is_number(b):
        return (a > b) - (a < b)
    if isinstance(a, str) and isinstance(b, str):
        return (a > b) - (a < b)
    raise BasicRuntimeError(f"cannot compare {type_name(left)} with {type_name(right)}")


def add(left: Value, right: Value, limits: Limits) -> Value:
    """`+` adds numbers and concatenates as soon as either side is text."""
    if isinstance(left, str) or isinstance(right, str):
        return concat(left, right, limits)
    if is_number(left) and is_number(right):
        return checked_number(left + right)
    raise BasicRuntimeError(f"cannot add {type_name(left)} and {type_name(right)}")


def concat(left: Value, right: Value, limits: Limits) -> str:
    text = to_text(left) + to_text(right)
    return checked_text(text, limits)


def checked_text(text: str, limits: Limits) -> str:
    checked_length(len(text), limits)
    return text


def checked_length(length: int, limits: Limits) -> None:
    """Refuses a text of this many characters (before it is built, where that matters)."""
    if length > limits.max_string:
        raise BasicRuntimeError(f"text longer than {limits.max_string} characters")


def arithmetic(op: str, left: Value, right: Value) -> Value:
    """- * / MOD ^ on numbers (numeric text is accepted, as answers arrive as text)."""
    a = to_number(left)
    b = to_number(right)
    if op == "-":
        return checked_number(a - b)
    if op == "*":
        return checked_number(a * b)
    if op == "/":
        if b == 0:
            raise BasicRuntimeError("division by zero")
        if isinstance(a, int) and isinstance(b, int) and a % b == 0:
            return a // b
        return checked_number(a / b)
    if op == "MOD":
        if b == 0:
            raise BasicRuntimeError("division by zero")
        if isinstance(a, int) and isinstance(b, int):
            return int(math.fmod(a, b))
        return checked_number(math.fmod(a, b))
    return power(a, b)


def power(a: int | float, b: int | float) -> Value:
    if a == 0 and b < 0:
        raise BasicRuntimeError("division by zero")
    if isinstance(a, int) and isinstance(b, int) and b >= 0:
        # Estimate the size first: a huge exponent must not allocate a huge integer.
        if a not in (-1, 0, 1) and b * math.log2(abs(a)) > 62:
            return checked_number(float(a) ** b if b < 1100 else math.inf)
        result: int = a**b
        return result
    try:
        result = float(a) ** float(b)
    except OverflowError:
        raise BasicRuntimeError("number out of range") from None
    if isinstance(result, complex):
        raise BasicRuntimeError("invalid power")
    return checked_number(result)


def round_half_up(value: int | float, digits: int = 0) -> int | float:
    """ROUND and FORMAT round halves away from zero, as people expect from money."""
    if isinstance(value, int) and digits >= 0:
        return value
    try:
        quantum = Decimal(1).scaleb(-digits)
        rounded = Decimal(repr(value)).quantize(quantum, rounding=ROUND_HALF_UP)
    except InvalidOperation:
        raise BasicRuntimeError("number out of range") from None
    if digits <= 0:
        return int(rounded)
    return float(rounded)


def copy_value(value: Value, limits: Limits) -> Value:
    """A deep copy, counting nodes, depth and bytes so that no stored value grows without
    bound (a list grown in place past the byte limit is refused at its next copy)."""
    budget = [limits.max_value_nodes, limits.max_value_bytes]
    return _copy(value, limits, budget, 0)


def _spend(budget: list[int], limits: Limits, value: object) -> None:
    budget[0] -= 1
    if budget[0] < 0:
        raise BasicRuntimeError(f"value larger than {limits.max_value_nodes} items")
    if isinstance(value, str):
        budget[1] -= value_bytes(value) + 2
    elif isinstance(value, list | tuple | dict):
        budget[1] -= 2 * len(value) + 2
    else:
        budget[1] -= 8
    if budget[1] < 0:
        raise value_too_large(limits)


def _copy(value: Value, limits: Limits, budget: list[int], depth: int) -> Value:
    _spend(budget, limits, value)
    if isinstance(value, list):
        if depth >= limits.max_value_depth:
            raise BasicRuntimeError(f"value nested deeper than {limits.max_value_depth} levels")
        if len(value) > limits.max_list:
            raise BasicRuntimeError(f"list longer than {limits.max_list} items")
        return [_copy(item, limits, budget, depth + 1) for item in value]
    if isinstance(value, dict):
        if depth >= limits.max_value_depth:
            raise BasicRuntimeError(f"value nested deeper than {limits.max_value_depth} levels")
        copied: dict[str, Value] = {}
        for k, v in value.items():
            key = str(k)
            _spend(budget, limits, key)
            copied[key] = _copy(v, limits, budget, depth + 1)
        return copied
    if isinstance(value, str):
        return checked_text(value, limits)
    if isinstance(value, float):
        return checked_number(value)
    return value


def from_foreign(raw: object, limits: Limits) -> Value:
    """Turn what a platform port returned into a value (tuples to lists, other keys to text),
    bounded like a stored value."""
    budget = [limits.max_value_nodes, limits.max_value_bytes]
    return _foreign(raw, limits, budget, 0)


def _foreign(raw: object, limits: Limits, budget: list[int], depth: int) -> Value:
    if depth > limits.max_value_depth:
        raise BasicRuntimeError("the platform returned a value that is too large")
    if not (raw is None or isinstance(raw, bool | int | float | str | list | tuple | dict)):
        raw = str(raw)
    _spend(budget, limits, raw)
    if raw is None or isinstance(raw, bool | int | str):
        return raw
    if isinstance(raw, float):
        return checked_number(raw)
    if isinstance(raw, list | tuple):
        return [_foreign(item, limits, budget, depth + 1) for item in raw]
    assert isinstance(raw, dict)
    converted: dict[str, Value] = {}
    for k, v in raw.items():
        key = str(k)
        _spend(budget, limits, key)
        converted[key] = _foreign(v, limits, budget, depth + 1)
    return converted


def get_member(obj: Value, name: str) -> Value:
    """`obj.field`: exact key first, then case-insensitive (identifiers are case-insensitive)."""
    if isinstance(obj, dict):
        if name in obj:
            return obj[name]
        lowered = name.lower()
        for key, item in obj.items():
            if key.lower() == lowered:
                return item
        return None
    if isinstance(obj, list | str) and name.lower() in ("length", "count"):
        return len(obj)
    raise BasicRuntimeError(f"cannot read field {name} of {type_name(obj)}")


def member_key(obj: dict[str, Value], name: str) -> str:
    """The key an assignment to `obj.name` updates: an existing key in any case, else name."""
    if name in obj:
        return name
    lowered = name.lower()
    for key in obj:
        if key.lower() == lowered:
            return key
    return name


def get_index(container: Value, index: Value) -> Value:
    """`list[i]` (0-based), `text[i]` and `obj["key"]`."""
    if isinstance(container, dict):
        return get_member(container, to_text(index))
    if isinstance(container, list | str):
        position = to_int(index, "a whole-number index")
        if not 0 <= position < len(container):
            raise BasicRuntimeError(f"index {position} is out of range ({len(container)} items)")
        return container[position]
    raise BasicRuntimeError(f"cannot index {type_name(container)}")

"""The built-in functions (text, numbers, dates, lists, other) and the methods on values.

Each function takes evaluated arguments and a context that gives it the clock, the random
source and the UUID source of the platform: nothing here reads the real time or the real
random generator. Argument counts live in the table, so the validator checks them too.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Protocol

from domain.basic import dates
from domain.basic.errors import BasicRuntimeError
from domain.basic.limits import Limits
from domain.basic.values import (
    Value,
    checked_length,
    checked_number,
    checked_text,
    compare,
    equals,
    from_foreign,
    get_member,
    is_number,
    json_text,
    number_from_text,
    round_half_up,
    to_int,
    to_number,
    to_text,
    type_name,
)


class FunctionContext(Protocol):
    """What a built-in may ask of the world; the machine answers through the platform."""

    @property
    def limits(self) -> Limits: ...

    def now(self) -> datetime: ...

    def random(self) -> float: ...

    def new_uuid(self) -> str: ...

    def copy(self, value: Value) -> Value:
        """A copy to store (value semantics), counted against the turn's work budget."""
        ...


Impl = Callable[[list[Value], FunctionContext], Value]


@dataclass(frozen=True)
class Builtin:
    name: str
    min_args: int
    max_args: int | None  # None: any number
    impl: Impl

    def arity_message(self, got: int) -> str | None:
        if got >= self.min_args and (self.max_args is None or got <= self.max_args):
            return None
        if self.max_args is None:
            expected = f"at least {self.min_args} argument" + ("" if self.min_args == 1 else "s")
        elif self.min_args == self.max_args:
            expected = f"{self.min_args} argument" + ("" if self.min_args == 1 else "s")
        else:
            expected = f"{self.min_args} to {self.max_args} arguments"
        return f"{self.name} expects {expected}, got {got}"


BUILTINS: dict[str, Builtin] = {}


def builtin(*names: str, args: tuple[int, int | None]) -> Callable[[Impl], Impl]:
    def register(impl: Impl) -> Impl:
        for name in names:
            BUILTINS[name] = Builtin(name, args[0], args[1], impl)
        return impl

    return register


def text_arg(value: Value) -> str:
    return to_text(value)


def list_arg(value: Value, name: str) -> list[Value]:
    if value is None:
        return []
    if isinstance(value, list):
        return value
    raise BasicRuntimeError(f"{name} expects a list, got {type_name(value)}")


# --- text -----------------------------------------------------------------------------------


@builtin("LEN", "LENGTH", args=(1, 1))
def _len(a: list[Value], _: FunctionContext) -> Value:
    value = a[0]
    if isinstance(value, list | dict | str):
        return len(value)
    return len(to_text(value))


@builtin("UPPER", "UCASE", args=(1, 1))
def _upper(a: list[Value], _: FunctionContext) -> Value:
    return text_arg(a[0]).upper()


@builtin("LOWER", "LCASE", args=(1, 1))
def _lower(a: list[Value], _: FunctionContext) -> Value:
    return text_arg(a[0]).lower()


@builtin("TRIM", args=(1, 1))
def _trim(a: list[Value], _: FunctionContext) -> Value:
    return text_arg(a[0]).strip()


@builtin("LEFT", args=(2, 2))
def _left(a: list[Value], _: FunctionContext) -> Value:
    count = max(0, to_int(a[1]))
    return text_arg(a[0])[:count]


@builtin("RIGHT", args=(2, 2))
def _right(a: list[Value], _: FunctionContext) -> Value:
    count = max(0, to_int(a[1]))
    text = text_arg(a[0])
    return text[len(text) - count :] if count else ""


@builtin("MID", args=(2, 3))
def _mid(a: list[Value], _: FunctionContext) -> Value:
    text = text_arg(a[0])
    start = to_int(a[1])
    if start < 1:
        raise BasicRuntimeError("MID starts at position 1")
    if len(a) == 3:
        return text[start - 1 : start - 1 + max(0, to_int(a[2]))]
    return text[start - 1 :]


@builtin("REPLACE", args=(3, 3))
def _replace(a: list[Value], ctx: FunctionContext) -> Value:
    text, find, by = text_arg(a[0]), text_arg(a[1]), text_arg(a[2])
    if not find:
        return text
    # Sized before it is built: replacing each of 100,000 characters with 100,000 more
    # must be refused, not attempted.
    checked_length(len(text) + text.count(find) * (len(by) - len(find)), ctx.limits)
    return text.replace(find, by)


@builtin("INSTR", args=(2, 3))
def _instr(a: list[Value], _: FunctionContext) -> Value:
    """INSTR(text, part) or INSTR(start, text, part): 1-based position, 0 when absent."""
    if len(a) == 3:
        start, text, part = to_int(a[0]), text_arg(a[1]), text_arg(a[2])
    else:
        start, text, part = 1, text_arg(a[0]), text_arg(a[1])
    return text.find(part, max(start, 1) - 1) + 1


@builtin("CONTAINS", args=(2, 2))
def _contains(a: list[Value], _: FunctionContext) -> Value:
    return contains(a[0], a[1])


def contains(container: Value, item: Value) -> bool:
    """Lists hold an equal item; text holds the part, ignoring case (answers are typed)."""
    if isinstance(container, list):
        return any(equals(element, item) for element in container)
    if isinstance(container, dict):
        return get_member(container, to_text(item)) is not None
    return to_text(item).lower() in to_text(container).lower()


@builtin("SPLIT", args=(1, 2))
def _split(a: list[Value], ctx: FunctionContext) -> Value:
    text = text_arg(a[0])
    separator = text_arg(a[1]) if len(a) == 2 else ","
    parts: list[Value] = list(text.split(separator)) if separator else list(text)
    if len(parts) > ctx.limits.max_list:
        raise BasicRuntimeError(f"list longer than {ctx.limits.max_list} items")
    return parts


@builtin("JOIN", args=(1, 2))
def _join(a: list[Value], ctx: FunctionContext) -> Value:
    separator = text_arg(a[1]) if len(a) == 2 else ", "
    items = list_arg(a[0], "JOIN")
    pieces: list[str] = []
    length = max(len(items) - 1, 0) * len(separator)
    for item in items:  # refused as soon as it is too long, not once it is all built
        piece = to_text(item)
        length += len(piece)
        checked_length(length, ctx.limits)
        pieces.append(piece)
    return separator.join(pieces)


@builtin("STR", args=(1, 1))
def _str(a: list[Value], _: FunctionContext) -> Value:
    return to_text(a[0])


@builtin("FORMAT", args=(1, 2))
def _format(a: list[Value], ctx: FunctionContext) -> Value:
    if len(a) == 1:
        return to_text(a[0])
    return checked_text(format_value(a[0], text_arg(a[1])), ctx.limits)


_NUMBER_CORE = re.compile(r"[#0][#0,]*(?:\.[#0]+)?|\.[#0]+")


def format_value(value: Value, pattern: str) -> str:
    """Number patterns (`#,##0.00`, `00000000`, `0%`) and date patterns (`YYYY-MM-DD`)."""
    number: int | float | None = value if is_number(value) else None
    if isinstance(value, str):
        number = number_from_text(value)
    if number is not None and _NUMBER_CORE.search(pattern):
        return format_number_pattern(number, pattern)
    if dates.has_date_tokens(pattern) and isinstance(value, str):
        parsed = dates.parse_when(value)
        if parsed is not None:
            return dates.format_when(parsed[0], pattern)
    return to_text(value)


def format_number_pattern(number: int | float, pattern: str) -> str:
    match = _NUMBER_CORE.search(pattern)
    assert match is not None
    prefix, core, suffix = pattern[: match.start()], match.group(), pattern[match.end() :]
    if "%" in prefix + suffix:
        number = number * 100
    int_pattern, _, frac_pattern = core.partition(".")
    decimals = len(frac_pattern)
    required = len(frac_pattern) - len(frac_pattern.lstrip("0"))
    quantum = Decimal(1).scaleb(-decimals)
    amount = Decimal(repr(float(number)) if isinstance(number, float) else number)
    rounded = abs(amount).quantize(quantum, rounding=ROUND_HALF_UP)
    whole, _, fraction = f"{rounded:f}".partition(".")
    fraction = fraction[:decimals]
    while len(fraction) > required and fraction.endswith("0") and "#" in frac_pattern:
        fraction = fraction[:-1]
    min_digits = int_pattern.replace(",", "").count("0")
    whole = whole.lstrip("0").rjust(min_digits, "0")
    if "," in int_pattern and whole:
        whole = f"{int(whole):,}"
    body = whole + ("." + fraction if fraction else "")
    sign = "-" if amount < 0 and rounded != 0 else ""
    return f"{sign}{prefix}{body}{suffix}"


# --- numbers --------------------------------------------------------------------------------


@builtin("VAL", args=(1, 1))
def _val(a: list[Value], _: FunctionContext) -> Value:
    if is_number(a[0]):
        return a[0]
    match = re.match(r"\s*[+-]?(\d+(\.\d+)?|\.\d+)", to_text(a[0]))
    if not match:
        return 0
    parsed = number_from_text(match.group())
    return parsed if parsed is not None else 0


@builtin("INT", args=(1, 1))
def _int(a: list[Value], _: FunctionContext) -> Value:
    return checked_number(math.floor(to_number(a[0])))


@builtin("ROUND", args=(1, 2))
def _round(a: list[Value], _: FunctionContext) -> Value:
    digits = to_int(a[1]) if len(a) == 2 else 0
    return round_half_up(to_number(a[0]), digits)


@builtin("ABS", args=(1, 1))
def _abs(a: list[Value], _: FunctionContext) -> Value:
    return abs(to_number(a[0]))


@builtin("RANDOM", args=(0, 2))
def _random(a: list[Value], ctx: FunctionContext) -> Value:
    """RANDOM() is in [0, 1); RANDOM(a, b) is a whole number from a to b inclusive."""
    if not a:
        return ctx.random()
    low, high = (0, to_int(a[0])) if len(a) == 1 else (to_int(a[0]), to_int(a[1]))
    if high < low:
        low, high = high, low
    return low + min(int(ctx.random() * (high - low + 1)), high - low)


@builtin("RND", args=(0, 1))
def _rnd(a: list[Value], ctx: FunctionContext) -> Value:
    return ctx.random()


def _numbers(a: list[Value], name: str) -> list[int | float]:
    items = a[0] if len(a) == 1 and isinstance(a[0], list) else a
    return [to_number(item) for item in items if item is not None]


@builtin("SUM", args=(1, None))
def _sum(a: list[Value], _: FunctionContext) -> Value:
    return checked_number(sum(_numbers(a, "SUM")))


@builtin("AVG", args=(1, None))
def _avg(a: list[Value], _: FunctionContext) -> Value:
    numbers = _numbers(a, "AVG")
    if not numbers:
        return None
    total = sum(numbers)
    return (
        total // len(numbers) if total % len(numbers) == 0 else checked_number(total / len(numbers))
    )


@builtin("MIN", args=(1, None))
def _min(a: list[Value], _: FunctionContext) -> Value:
    return _extreme(a, -1)


@builtin("MAX", args=(1, None))
def _max(a: list[Value], _: FunctionContext) -> Value:
    return _extreme(a, 1)


def _extreme(a: list[Value], sign: int) -> Value:
    items = a[0] if len(a) == 1 and isinstance(a[0], list) else a
    best: Value = None
    for item in items:
        if item is None:
            continue
        if best is None or compare(item, best) * sign > 0:
            best = item
    return best


# --- dates ----------------------------------------------------------------------------------


@builtin("NOW", args=(0, 0))
def _now(a: list[Value], ctx: FunctionContext) -> Value:
    return dates.render(dates.local_now(ctx.now()), True)


@builtin("TODAY", args=(0, 0))
def _today(a: list[Value], ctx: FunctionContext) -> Value:
    return dates.today_text(ctx.now())


def _unit(value: Value) -> str:
    unit = dates.unit_of(to_text(value))
    if unit is None:
        raise BasicRuntimeError(f'unknown date unit "{to_text(value)}"')
    return unit


@builtin("DATEADD", args=(3, 3))
def _dateadd(a: list[Value], _: FunctionContext) -> Value:
    """DATEADD(date, n, "day") and the VB order DATEADD("d", n, date)."""
    if isinstance(a[0], str) and dates.unit_of(a[0]) is not None and dates.parse_when(a[0]) is None:
        unit, amount, when = _unit(a[0]), a[1], a[2]
    else:
        when, amount, unit = a[0], a[1], _unit(a[2])
    moment, with_time = dates.require_when(when)
    result = dates.add(moment, to_number(amount), unit)
    return dates.render(result, with_time or unit in ("hour", "minute", "second"))


@builtin("DATEDIFF", args=(2, 3))
def _datediff(a: list[Value], _: FunctionContext) -> Value:
    """DATEDIFF(start, end, "day") and the VB order DATEDIFF("d", start, end): end - start."""
    if len(a) == 3 and isinstance(a[0], str) and dates.parse_when(a[0]) is None:
        unit, start, end = _unit(a[0]), a[1], a[2]
    else:
        start, end = a[0], a[1]
        unit = _unit(a[2]) if len(a) == 3 else "day"
    return dates.diff(dates.require_when(start)[0], dates.require_when(end)[0], unit)


@builtin("YEAR", args=(1, 1))
def _year(a: list[Value], _: FunctionContext) -> Value:
    return dates.require_when(a[0])[0].year


@builtin("MONTH", args=(1, 1))
def _month(a: list[Value], _: FunctionContext) -> Value:
    return dates.require_when(a[0])[0].month


@builtin("DAY", args=(1, 1))
def _day(a: list[Value], _: FunctionContext) -> Value:
    return dates.require_when(a[0])[0].day


@builtin("HOUR", args=(1, 1))
def _hour(a: list[Value], _: FunctionContext) -> Value:
    return dates.require_when(a[0], "a date or time")[0].hour


@builtin("WEEKDAY", args=(1, 1))
def _weekday(a: list[Value], _: FunctionContext) -> Value:
    return dates.weekday(dates.require_when(a[0])[0])


# --- lists ----------------------------------------------------------------------------------


@builtin("UBOUND", args=(1, 1))
def _ubound(a: list[Value], _: FunctionContext) -> Value:
    return len(list_arg(a[0], "UBOUND")) - 1


@builtin("COUNT", args=(1, 1))
def _count(a: list[Value], _: FunctionContext) -> Value:
    value = a[0]
    if value is None:
        return 0
    if isinstance(value, list | dict | str):
        return len(value)
    raise BasicRuntimeError(f"COUNT expects a list, got {type_name(value)}")


@builtin("FIRST", args=(1, 1))
def _first(a: list[Value], _: FunctionContext) -> Value:
    items = list_arg(a[0], "FIRST")
    return items[0] if items else None


@builtin("LAST", args=(1, 1))
def _last(a: list[Value], _: FunctionContext) -> Value:
    items = list_arg(a[0], "LAST")
    return items[-1] if items else None


_FILTER = re.compile(r"\s*([^=<>!]+?)\s*(==|=|<>|!=|>=|<=|>|<)\s*(.*?)\s*")


@builtin("FILTER", args=(2, 3))
def _filter(a: list[Value], _: FunctionContext) -> Value:
    """FILTER(list, "field=value") (also <> > < >= <=) or FILTER(list, "field", value)."""
    items = list_arg(a[0], "FILTER")
    if len(a) == 3:
        field, op, wanted = to_text(a[1]), "=", a[2]
    else:
        match = _FILTER.fullmatch(to_text(a[1]))
        if not match:
            raise BasicRuntimeError(f'FILTER condition "{to_text(a[1])}" is not field=value')
        field, op, raw = match.groups()
        wanted = raw[1:-1] if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"" else raw
    return [item for item in items if _matches(item, field, op, wanted)]


def _matches(item: Value, field: str, op: str, wanted: Value) -> bool:
    actual = get_member(item, field) if isinstance(item, dict) else None
    if op in ("=", "=="):
        return equals(actual, wanted)
    if op in ("<>", "!="):
        return not equals(actual, wanted)
    if actual is None:
        return False
    try:
        order = compare(actual, wanted)
    except BasicRuntimeError:
        return False
    return {">": order > 0, "<": order < 0, ">=": order >= 0, "<=": order <= 0}[op]


# --- other ----------------------------------------------------------------------------------


@builtin("ISEMPTY", args=(1, 1))
def _isempty(a: list[Value], _: FunctionContext) -> Value:
    value = a[0]
    return value is None or (isinstance(value, str | list | dict) and len(value) == 0)


@builtin("NVL", args=(2, 2))
def _nvl(a: list[Value], _: FunctionContext) -> Value:
    return a[1] if a[0] is None else a[0]


@builtin("COALESCE", args=(1, None))
def _coalesce(a: list[Value], _: FunctionContext) -> Value:
    return next((value for value in a if value is not None), None)


@builtin("UUID", "GUID", args=(0, 0))
def _uuid(a: list[Value], ctx: FunctionContext) -> Value:
    return ctx.new_uuid()


@builtin("TOJSON", args=(1, 1))
def _tojson(a: list[Value], ctx: FunctionContext) -> Value:
    return checked_text(json_text(a[0], ctx.limits.max_string * 4), ctx.limits)


def _no_constant(name: str) -> Value:
    raise ValueError(f"{name} is not allowed")


@builtin("JSON", args=(1, 1))
def _json(a: list[Value], ctx: FunctionContext) -> Value:
    """Parse JSON text; NaN, infinities and oversize documents are refused."""
    if not isinstance(a[0], str):
        return ctx.copy(a[0])
    text = checked_text(a[0], ctx.limits)
    try:
        raw = json.loads(text, parse_constant=_no_constant, parse_float=_finite_float)
    except (ValueError, RecursionError):
        raise BasicRuntimeError("invalid JSON") from None
    return from_foreign(raw, ctx.limits)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("number out of range")
    return value


@builtin("IIF", args=(3, 3))
def _iif(a: list[Value], _: FunctionContext) -> Value:  # evaluated lazily by the machine
    raise BasicRuntimeError("IIF is evaluated by the machine")


# Functions that may be called without parentheses because they take no argument.
NO_ARGUMENT = frozenset({"NOW", "TODAY", "RND", "RANDOM", "UUID", "GUID"})


def call_builtin(name: str, args: list[Value], ctx: FunctionContext) -> Value:
    fn = BUILTINS[name]
    message = fn.arity_message(len(args))
    if message:
        raise BasicRuntimeError(message)
    return fn.impl(args, ctx)


def call_method(receiver: Value, name: str, args: list[Value], ctx: FunctionContext) -> Value:
    """`obj.method(args)`; `.PUSH` changes the list in place (the variable's own copy)."""
    method = name.upper()
    if isinstance(receiver, list):
        return _list_method(receiver, method, args, ctx)
    if isinstance(receiver, str):
        return _text_method(receiver, method, args, ctx)
    if isinstance(receiver, dict):
        if method in ("CONTAINS", "HAS", "HASKEY") and len(args) == 1:
            return get_member(receiver, to_text(args[0])) is not None
        if method == "KEYS" and not args:
            return list(receiver)
        if method in ("LENGTH", "COUNT", "LEN") and not args:
            return len(receiver)
    raise BasicRuntimeError(f"{type_name(receiver)} has no method {name}")


def _list_method(items: list[Value], method: str, args: list[Value], ctx: FunctionContext) -> Value:
    if method in ("PUSH", "ADD", "APPEND") and args:
        if len(items) + len(args) > ctx.limits.max_list:
            raise BasicRuntimeError(f"list longer than {ctx.limits.max_list} items")
        items.extend(ctx.copy(arg) for arg in args)
        return None
    if method == "POP" and not args:
        return items.pop() if items else None
    if method in ("CONTAINS", "INCLUDES") and len(args) == 1:
        return contains(items, args[0])
    if method == "INDEXOF" and len(args) == 1:
        return next((i for i, item in enumerate(items) if equals(item, args[0])), -1)
    if method == "JOIN" and len(args) <= 1:
        return _join([items, *args], ctx)
    if method in ("LENGTH", "COUNT", "LEN") and not args:
        return len(items)
    if method in ("FIRST", "LAST") and not args:
        return (items[0] if method == "FIRST" else items[-1]) if items else None
    raise BasicRuntimeError(f"a list has no method {method.lower()} with {len(args)} arguments")


def _text_method(text: str, method: str, args: list[Value], ctx: FunctionContext) -> Value:
    simple: dict[str, Callable[[str], Value]] = {
        "TRIM": str.strip,
        "UPPER": str.upper,
        "TOUPPERCASE": str.upper,
        "UCASE": str.upper,
        "LOWER": str.lower,
        "TOLOWERCASE": str.lower,
        "LCASE": str.lower,
        "LENGTH": len,
        "LEN": len,
    }
    if method in simple and not args:
        return simple[method](text)
    if method in ("CONTAINS", "INCLUDES") and len(args) == 1:
        return contains(text, args[0])
    if method == "STARTSWITH" and len(args) == 1:
        return text.startswith(to_text(args[0]))
    if method == "ENDSWITH" and len(args) == 1:
        return text.endswith(to_text(args[0]))
    if method == "INDEXOF" and len(args) == 1:
        return text.find(to_text(args[0]))
    if method == "SPLIT" and len(args) <= 1:
        return _split([text, *args], ctx)
    if method == "REPLACE" and len(args) == 2:
        return _replace([text, *args], ctx)
    raise BasicRuntimeError(f"text has no method {method.lower()} with {len(args)} arguments")

"""Why a value does not fit a command's type, in sentences a person can act on.

msgspec stops at the first error and words it for programmers (`Expected `str` matching regex
'^[^@ ...'`). `explain` re-checks a struct field by field and says, for every bad field, what
was expected and what came: "`due_date`: expected an RFC 3339 date-time such as
2024-01-15T17:00:00Z, got 'tomorrow'". A field type's `Meta(description=..., examples=...)`
names what it expects; its first clause is read as a noun phrase ("An email address" with the
example "ana@example.com" gives "expected an email address such as ana@example.com").

The HTTP API (request bodies and query parameters) and the CLI both speak through it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal, get_args, get_origin

import msgspec
from msgspec import inspect as mi

# A value shown back to its sender is cut to this many characters.
SHOWN_CHARS = 60
UUID_EXAMPLE = "3fa85f64-5717-4562-b3fc-2c963f66afa6"
_MISSING: Any = object()
_PATH_STEP = re.compile(r"\.([^.\[]+)|\[(\d+|\.\.\.)\]")
_LENGTH = re.compile(r"^Expected `(\w+)` of length (>=|<=) (\d+)")
_REQUIRED = re.compile(r"^Object missing required field `(.+)`")
_UNKNOWN = re.compile(r"^Object contains unknown field `(.+)`")


@dataclass(frozen=True)
class FieldProblem:
    """One bad field: its name (a path such as `owners[1]` inside a value; None when the value
    as a whole is wrong) and a sentence that names it."""

    field: str | None
    message: str


def explain(
    struct_type: type[msgspec.Struct], value: Any, strict: bool = False
) -> list[FieldProblem]:
    """Every reason `value` (decoded JSON, or a dict of options) does not convert to
    `struct_type`, one per field, in the struct's field order; [] when it converts.

    `strict` is msgspec's: False (as the HTTP API decodes bodies) lets "3" stand for 3.
    """
    try:
        msgspec.convert(value, struct_type, strict=strict, str_keys=True)
        return []
    except msgspec.ValidationError as exc:
        whole = str(exc)
    info = mi.type_info(struct_type)
    if not isinstance(info, mi.StructType):
        return [problem(None, _reason(whole, info, value))]
    names = [f.encode_name for f in info.fields]
    if not isinstance(value, dict):
        return [
            FieldProblem(
                None,
                f"the body must be a JSON object with the fields {', '.join(names)};"
                f" got {_shown(value)}",
            )
        ]
    problems: list[FieldProblem] = []
    annotations = {f.encode_name: f.type for f in msgspec.structs.fields(struct_type)}
    for field in info.fields:
        name = field.encode_name
        if name not in value:
            if field.required:
                problems.append(FieldProblem(name, f"`{name}` is required"))
            continue
        found = explain_value(annotations[name], value[name], name, strict)
        if found is not None:
            problems.append(found)
    if info.forbid_unknown_fields:
        for key in value:
            if key not in annotations:
                problems.append(_unknown(str(key), names))
    if not problems:  # a check of the struct as a whole (e.g. __post_init__)
        problems.append(problem(None, _reason(whole, info, value)))
    return problems


def explain_value(
    annotation: Any, value: Any, field: str, strict: bool = False
) -> FieldProblem | None:
    """Why `value` does not convert to `annotation` (a field's or a parameter's type), as a
    sentence naming `field`; None when it converts."""
    try:
        msgspec.convert(value, annotation, strict=strict, str_keys=True)
        return None
    except msgspec.ValidationError as exc:
        text, _, where = str(exc).partition(" - at `$")
    path = field + where.rstrip("`")
    info, leaf = _follow(mi.type_info(annotation), value, where.rstrip("`"))
    order = _literal_order(annotation)
    required = _REQUIRED.match(text)
    if required:
        return FieldProblem(
            f"{path}.{required.group(1)}", f"`{path}.{required.group(1)}` is required"
        )
    unknown = _UNKNOWN.match(text)
    if unknown:
        fields = [f.encode_name for f in info.fields] if isinstance(info, mi.StructType) else []
        return _unknown(f"{path}.{unknown.group(1)}", fields)
    return problem(path, _reason(text, info, leaf, order))


def problem(field: str | None, reason: str) -> FieldProblem:
    """A problem whose sentence is `reason` prefixed with the field's name."""
    return FieldProblem(field, f"`{field}`: {reason}" if field else reason)


def summary(problems: list[FieldProblem]) -> str:
    """One message for them all: the sentence itself, or "2 invalid fields: ...; ..."."""
    if len(problems) == 1:
        return problems[0].message
    return f"{len(problems)} invalid fields: " + "; ".join(p.message for p in problems)


def expected(info: mi.Type, order: tuple[Any, ...] = ()) -> str:
    """What a type accepts, as a noun phrase: "an integer from 1 to 200", "one of 'low',
    'high'", or the first clause of its description. `order`: literal values in the order
    they were declared (msgspec.inspect sorts them)."""
    if isinstance(info, mi.Metadata):
        # A description says what a pattern wants; other constraints say it themselves.
        schema = info.extra_json_schema or {}
        examples = schema.get("examples") or []
        description = schema.get("description")
        described = isinstance(info.type, mi.StrType) and info.type.pattern is not None
        if not (described and isinstance(description, str)):
            return expected(info.type, order)
        phrase = _phrase(description)
        # An example may be a documentation object (an OpenAPI Example) holding the value.
        example = getattr(examples[0], "value", examples[0]) if examples else None
        if isinstance(example, str) and example not in phrase:
            phrase += f" such as {example}"
        return phrase
    if isinstance(info, mi.UnionType):
        return " or ".join(expected(t, order) for t in info.types)
    if isinstance(info, mi.LiteralType):
        rank = {value: at for at, value in enumerate(order)}
        return _one_of(tuple(sorted(info.values, key=lambda v: rank.get(v, len(rank)))))
    if isinstance(info, mi.EnumType):
        return _one_of(tuple(member.value for member in info.cls))
    if isinstance(info, mi.StrType):
        if info.pattern is not None:
            return "text in the required format"
        return "a string" + _count(info.min_length, info.max_length, "character")
    if isinstance(info, (mi.IntType, mi.FloatType)):
        noun = "an integer" if isinstance(info, mi.IntType) else "a number"
        return noun + _range(info)
    if isinstance(info, (mi.ListType, mi.SetType, mi.FrozenSetType, mi.VarTupleType)):
        return "an array" + _count(info.min_length, info.max_length, "item")
    if isinstance(info, mi.TupleType):
        return f"an array of {len(info.item_types)} items"
    if isinstance(info, mi.DictType):
        return "an object" + _count(info.min_length, info.max_length, "entry", "entries")
    if isinstance(info, (mi.StructType, mi.TypedDictType, mi.DataclassType, mi.NamedTupleType)):
        return "an object"
    simple = {
        mi.BoolType: "true or false",
        mi.NoneType: "null",
        mi.UUIDType: f"a UUID such as {UUID_EXAMPLE}",
        mi.DateTimeType: "an RFC 3339 date-time such as 2024-01-15T17:00:00Z",
        mi.DateType: "a date such as 2024-01-15",
        mi.DecimalType: "a decimal number",
        mi.AnyType: "any value",
    }
    return simple.get(type(info), "a valid value")


def _reason(text: str, info: mi.Type, value: Any, order: tuple[Any, ...] = ()) -> str:
    """msgspec's message for one value, said again from the type's point of view."""
    length = _LENGTH.match(text)
    if length and isinstance(value, (str, list, dict)):
        kind, op, bound = length.groups()
        unit = {"str": "character", "object": "entry"}.get(kind, "item")
        plural = "entries" if unit == "entry" else f"{unit}s"
        n = int(bound)
        if op == ">=" and n == 1 and not value:
            return "may not be empty"
        words = f"{n} {unit if n == 1 else plural}"
        return f"expected {'at least' if op == '>=' else 'at most'} {words}, got {len(value)}"
    if text in ("Number out of range", "Integer value out of range"):
        return "the number is out of range"
    shown = "" if value is _MISSING else f", got {_shown(value)}"
    return f"expected {expected(info, order)}{shown}"


def _follow(info: mi.Type, value: Any, where: str) -> tuple[mi.Type, Any]:
    """The type and the value at msgspec's error path (`.a[0]`), narrowed to the union member
    of the value's own kind."""
    for key, index in _PATH_STEP.findall(where):
        info = _container(_narrow(info, value), value)
        if key:
            value = value.get(key, _MISSING) if isinstance(value, dict) else _MISSING
            fields = info.fields if isinstance(info, mi.StructType) else ()
            info = next((f.type for f in fields if f.encode_name == key), _item(info))
        else:
            if index.isdigit() and isinstance(value, list) and int(index) < len(value):
                value = value[int(index)]
            else:
                value = _MISSING
            info = _item(info)
    return _narrow(info, value), value


def _container(info: mi.Type, value: Any) -> mi.Type:
    return info.type if isinstance(info, mi.Metadata) else info


def _item(info: mi.Type) -> mi.Type:
    if isinstance(info, (mi.ListType, mi.SetType, mi.FrozenSetType, mi.VarTupleType)):
        return info.item_type
    if isinstance(info, mi.DictType):
        return info.value_type
    return mi.AnyType()


_KINDS: dict[type, tuple[type, ...]] = {
    str: (mi.StrType, mi.LiteralType, mi.EnumType, mi.UUIDType, mi.DateTimeType, mi.DateType),
    bool: (mi.BoolType,),
    int: (mi.IntType, mi.FloatType, mi.LiteralType, mi.EnumType),
    float: (mi.FloatType,),
    list: (mi.ListType, mi.SetType, mi.FrozenSetType, mi.VarTupleType, mi.TupleType),
    dict: (mi.DictType, mi.StructType, mi.TypedDictType, mi.DataclassType),
}


def _narrow(info: mi.Type, value: Any) -> mi.Type:
    """A union's one member of the value's kind (a string for `When | None`), else the union."""
    if not isinstance(info, mi.UnionType) or value is _MISSING:
        return info
    kinds = _KINDS.get(type(value), ())
    members = [t for t in info.types if isinstance(_container(t, value), kinds)]
    return members[0] if len(members) == 1 else info


def _phrase(description: str) -> str:
    """A description's first clause, as a noun phrase that follows "expected"."""
    first = re.split(r"; |\. ", description.strip(), maxsplit=1)[0].rstrip(".")
    return first[:1].lower() + first[1:] if first[1:2].islower() or first[1:2] == " " else first


def _literal_order(annotation: Any) -> tuple[Any, ...]:
    """The values of every Literal inside `annotation`, in declaration order."""
    found: list[Any] = []
    stack = [annotation]
    while stack:
        current = stack.pop()
        if get_origin(current) is Literal:
            found.extend(get_args(current))
        else:
            stack.extend(reversed(get_args(current)))
    return tuple(found)


def _one_of(values: tuple[Any, ...]) -> str:
    shown = [_shown(v) for v in values]
    return shown[0] if len(shown) == 1 else "one of " + ", ".join(shown)


def _count(low: int | None, high: int | None, unit: str, plural: str | None = None) -> str:
    many = plural or f"{unit}s"
    if low is not None and high is not None:
        return f" of {low} to {high} {many}"
    if high is not None:
        return f" of at most {high} {unit if high == 1 else many}"
    if low:
        return f" of at least {low} {unit if low == 1 else many}"
    return ""


def _range(info: mi.IntType | mi.FloatType) -> str:
    low = info.ge if info.ge is not None else info.gt
    high = info.le if info.le is not None else info.lt
    if info.ge is not None and info.le is not None:
        return f" from {info.ge} to {info.le}"
    parts = []
    if low is not None:
        parts.append(f"{'at least' if info.ge is not None else 'greater than'} {low}")
    if high is not None:
        parts.append(f"{'at most' if info.le is not None else 'less than'} {high}")
    return (" " + " and ".join(parts)) if parts else ""


def _shown(value: Any) -> str:
    """The value as its sender wrote it, cut short: 'text', 12, true, null, an array."""
    if isinstance(value, str):
        text = value if len(value) <= SHOWN_CHARS else value[:SHOWN_CHARS] + "…"
        return f"'{text}'"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        try:
            text = repr(value)
        except ValueError:  # an int too long for str() (sys.get_int_max_str_digits)
            return "a number too long to show"
        return text if len(text) <= SHOWN_CHARS else f"a number of {len(text)} digits"
    if isinstance(value, (list, tuple)):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _unknown(field: str, names: list[str]) -> FieldProblem:
    listed = f" (fields: {', '.join(names)})" if names else ""
    return FieldProblem(field, f"`{field}` is not a field of this request{listed}")

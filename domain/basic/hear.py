"""Checking and normalising an answer to `HEAR var AS type` (or a menu).

Each type accepts what people actually type (`R$ 1.234,56`, `sim`, `amanhã`, `9:05`) and
stores one canonical form, so the rest of the dialog compares clean values. A refused answer
gets a type-specific prompt; the machine re-asks up to the retry limit.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, timedelta

from domain.basic.values import Value

PROMPTS = {
    "TEXT": "Please type an answer.",
    "EMAIL": "Please enter a valid email address.",
    "INTEGER": "Please enter a whole number.",
    "FLOAT": "Please enter a number.",
    "BOOLEAN": "Please answer yes or no.",
    "DATE": "Please enter a date as YYYY-MM-DD.",
    "HOUR": "Please enter a time as HH:MM.",
    "NAME": "Please enter a name.",
    "MOBILE": "Please enter a valid phone number.",
    "URL": "Please enter a valid web address.",
    "UUID": "Please enter a valid UUID.",
    "MONEY": "Please enter an amount, such as 1234.56.",
    "ZIPCODE": "Please enter a valid ZIP code.",
}

_YES = {"yes", "y", "true", "sim", "s", "si", "sí", "1", "ok", "okay", "yeah", "yep", "oui", "ja"}
_NO = {"no", "n", "false", "não", "nao", "0", "nope", "non", "nein"}
_TODAY = {"today", "hoje", "hoy"}
_TOMORROW = {"tomorrow", "amanhã", "amanha", "mañana", "manana"}
_YESTERDAY = {"yesterday", "ontem", "ayer"}

_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s.]+")
_NAME = re.compile(r"[^\W\d_]+(?:[ '\-.][^\W\d_]*)*")
_URL = re.compile(r"(https?://)?([\w-]+\.)+[a-z]{2,}(:\d+)?(/\S*)?", re.IGNORECASE)
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE)
_ZIP = re.compile(r"\d{5}(-\d{4})?|\d{5}-?\d{3}")
_HOUR = re.compile(r"(\d{1,2})(?:\s*[:hH]\s*(\d{2}))?\s*(am|pm|h)?", re.IGNORECASE)
_CURRENCY = re.compile(
    r"^(R\$|US\$|\$|€|£|USD|BRL|EUR)\s*|\s*(R\$|\$|€|£|USD|BRL|EUR)$", re.IGNORECASE
)


def menu_prompt(options: list[str]) -> str:
    return "Please choose one of: " + ", ".join(options) + "."


def check(
    kind: str, answer: str, options: list[str], today: Callable[[], date]
) -> tuple[bool, Value]:
    """(accepted, value) for an answer; today is called only for relative dates."""
    text = answer.strip()
    if kind == "ANY":
        return True, answer
    if kind == "MENU":
        return _menu(text, options)
    if kind == "DATE":
        return _date(text, today)
    return _CHECKERS[kind](text)


def _menu(text: str, options: list[str]) -> tuple[bool, Value]:
    lowered = text.lower()
    for option in options:
        if option.strip().lower() == lowered:
            return True, option
    if text.isdecimal() and 1 <= int(text) <= len(options):  # isdigit() takes `²`; int() not
        return True, options[int(text) - 1]
    return False, None


def _text(text: str) -> tuple[bool, Value]:
    return (True, text) if text else (False, None)


def _email(text: str) -> tuple[bool, Value]:
    return (True, text.lower()) if _EMAIL.fullmatch(text) else (False, None)


def _integer(text: str) -> tuple[bool, Value]:
    cleaned = text.replace(" ", "")
    if re.fullmatch(r"[+-]?\d{1,18}", cleaned):
        return True, int(cleaned)
    return False, None


def _float(text: str) -> tuple[bool, Value]:
    cleaned = text.replace(" ", "")
    if re.fullmatch(r"[+-]?(\d{1,15}([.,]\d{1,15})?|[.,]\d{1,15})", cleaned):
        return True, float(cleaned.replace(",", "."))
    return False, None


def _boolean(text: str) -> tuple[bool, Value]:
    lowered = text.lower().strip(".!")
    if lowered in _YES:
        return True, True
    if lowered in _NO:
        return True, False
    return False, None


def _date(text: str, today: Callable[[], date]) -> tuple[bool, Value]:
    lowered = text.lower()
    shift = {
        **dict.fromkeys(_TODAY, 0),
        **dict.fromkeys(_TOMORROW, 1),
        **dict.fromkeys(_YESTERDAY, -1),
    }
    if lowered in shift:
        return True, (today() + timedelta(days=shift[lowered])).isoformat()
    for pattern, order in (
        (r"(\d{4})-(\d{1,2})-(\d{1,2})", "ymd"),
        (r"(\d{1,2})/(\d{1,2})/(\d{4})", "dmy"),
    ):
        match = re.fullmatch(pattern, text)
        if match:
            parts = dict(zip(order, (int(g) for g in match.groups()), strict=True))
            try:
                return True, date(parts["y"], parts["m"], parts["d"]).isoformat()
            except ValueError:
                return False, None
    return False, None


def _hour(text: str) -> tuple[bool, Value]:
    match = _HOUR.fullmatch(text)
    if not match:
        return False, None
    hour, minute, suffix = (
        int(match.group(1)),
        int(match.group(2) or 0),
        (match.group(3) or "").lower(),
    )
    if match.group(2) is None and not suffix:
        return False, None
    if suffix in ("am", "pm"):
        if not 1 <= hour <= 12:
            return False, None
        hour = hour % 12 + (12 if suffix == "pm" else 0)
    if hour > 23 or minute > 59:
        return False, None
    return True, f"{hour:02d}:{minute:02d}"


def _name(text: str) -> tuple[bool, Value]:
    collapsed = " ".join(text.split())
    if len(collapsed) >= 2 and _NAME.fullmatch(collapsed):
        return True, collapsed
    return False, None


def _mobile(text: str) -> tuple[bool, Value]:
    cleaned = re.sub(r"[\s\-().]", "", text)
    plus = cleaned.startswith("+")
    digits = cleaned[1:] if plus else cleaned
    if digits.isdigit() and digits.isascii() and 8 <= len(digits) <= 15:
        return True, ("+" if plus else "") + digits
    return False, None


def _url(text: str) -> tuple[bool, Value]:
    if " " in text or not _URL.fullmatch(text):
        return False, None
    if re.match(r"https?://", text, re.IGNORECASE):
        return True, text
    return True, "https://" + text


def _uuid(text: str) -> tuple[bool, Value]:
    return (True, text.lower()) if _UUID.fullmatch(text) else (False, None)


def _zipcode(text: str) -> tuple[bool, Value]:
    return (True, text) if _ZIP.fullmatch(text) else (False, None)


def parse_money(text: str) -> float | None:
    """`R$ 1.234,56` and `$1,234.56` are both 1234.56; the last separator followed by one
    or two digits is the decimal one, groups of three are thousands."""
    cleaned = _CURRENCY.sub("", text.strip()).replace(" ", "")
    negative = cleaned.startswith("-")
    cleaned = cleaned.lstrip("+-")
    if not re.fullmatch(r"\d[\d.,]*", cleaned) or not cleaned[-1].isdigit():
        return None
    last = max(cleaned.rfind(","), cleaned.rfind("."))
    whole, fraction = cleaned, ""
    if last >= 0 and len(cleaned) - last - 1 in (1, 2):
        whole, fraction = cleaned[:last], cleaned[last + 1 :]
    groups = re.split(r"[.,]", whole)
    separators = set(re.findall(r"[.,]", whole))
    if len(separators) > 1 or (len(groups) > 1 and not _thousands(groups)):
        return None
    if fraction and separators and cleaned[last] in separators:
        return None
    value = float("".join(groups) + ("." + fraction if fraction else ""))
    return -value if negative else value


def _thousands(groups: list[str]) -> bool:
    return 1 <= len(groups[0]) <= 3 and all(len(g) == 3 for g in groups[1:])


def _money(text: str) -> tuple[bool, Value]:
    value = parse_money(text)
    if value is None or abs(value) >= 1e15:
        return False, None
    return True, round(value, 2)


_CHECKERS: dict[str, Callable[[str], tuple[bool, Value]]] = {
    "TEXT": _text,
    "EMAIL": _email,
    "INTEGER": _integer,
    "FLOAT": _float,
    "BOOLEAN": _boolean,
    "HOUR": _hour,
    "NAME": _name,
    "MOBILE": _mobile,
    "URL": _url,
    "UUID": _uuid,
    "MONEY": _money,
    "ZIPCODE": _zipcode,
}

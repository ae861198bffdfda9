"""A suspended dialog, as plain data.

The whole state of a conversation in a dialog (where it stands, its call stack and variables,
the session values, the suggestions on offer and the HEAR it waits on) round-trips through
`to_data` / `from_data` as JSON-compatible data, so it can live in the session's event stream
and survive a restart. A position is a list of cursors: the first walks a routine's body, each
next one walks a block (named by key) of the statement the previous one stands on.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from domain.basic.values import Value

FORMAT = 1


@dataclass
class Cursor:
    key: str  # which block of the statement below ("" for a routine's body)
    index: int = 0
    loop: dict[str, Value] | None = None  # FOR: end/step; FOR EACH: items/pos

    def to_data(self) -> dict[str, Value]:
        data: dict[str, Value] = {"key": self.key, "index": self.index}
        if self.loop is not None:
            data["loop"] = self.loop
        return data

    @classmethod
    def from_data(cls, data: object) -> Cursor:
        raw = _mapping(data, "cursor")
        loop = raw.get("loop")
        if loop is not None and not isinstance(loop, dict):
            raise ValueError("cursor loop must be an object")
        return cls(key=_text(raw, "key"), index=_int(raw, "index"), loop=loop)


@dataclass
class Frame:
    """One call: a dialog (its variables are that dialog's globals), a SUB or a FUNCTION."""

    kind: str  # "dialog", "sub", "function"
    dialog: str
    version: int
    routine: str  # "" for a dialog's main body, else the routine's lower-cased name
    variables: dict[str, Value] = field(default_factory=dict)
    cursors: list[Cursor] = field(default_factory=lambda: [Cursor("")])
    resume_next: bool = False

    def to_data(self) -> dict[str, Value]:
        return {
            "kind": self.kind,
            "dialog": self.dialog,
            "version": self.version,
            "routine": self.routine,
            "variables": dict(self.variables),
            "cursors": [c.to_data() for c in self.cursors],
            "resume_next": self.resume_next,
        }

    @classmethod
    def from_data(cls, data: object) -> Frame:
        raw = _mapping(data, "frame")
        kind = _text(raw, "kind")
        if kind not in ("dialog", "sub", "function"):
            raise ValueError(f"unknown frame kind {kind!r}")
        variables = raw.get("variables")
        cursors = raw.get("cursors")
        if not isinstance(variables, dict) or not isinstance(cursors, list) or not cursors:
            raise ValueError("a frame needs variables and at least one cursor")
        return cls(
            kind=kind,
            dialog=_text(raw, "dialog"),
            version=_int(raw, "version"),
            routine=_text(raw, "routine"),
            variables=dict(variables),
            cursors=[Cursor.from_data(c) for c in cursors],
            resume_next=bool(raw.get("resume_next", False)),
        )


@dataclass
class PendingHear:
    """What a suspended HEAR waits for; options are the menu, already evaluated."""

    target: str
    kind: str  # "ANY", a HEAR type, or "MENU"
    options: list[str]
    retries: int
    prompt: str | None
    default: Value
    line: int

    def to_data(self) -> dict[str, Value]:
        return {
            "target": self.target,
            "kind": self.kind,
            "options": list(self.options),
            "retries": self.retries,
            "prompt": self.prompt,
            "default": self.default,
            "line": self.line,
        }

    @classmethod
    def from_data(cls, data: object) -> PendingHear:
        raw = _mapping(data, "pending")
        options = raw.get("options", [])
        prompt = raw.get("prompt")
        if not isinstance(options, list) or not all(isinstance(o, str) for o in options):
            raise ValueError("pending options must be a list of text")
        if prompt is not None and not isinstance(prompt, str):
            raise ValueError("pending prompt must be text")
        return cls(
            target=_text(raw, "target"),
            kind=_text(raw, "kind"),
            options=[o for o in options if isinstance(o, str)],
            retries=_int(raw, "retries"),
            prompt=prompt,
            default=raw.get("default"),
            line=_int(raw, "line"),
        )


@dataclass
class State:
    """Everything a conversation needs to continue in a dialog on the next message."""

    dialog: str
    version: int
    frames: list[Frame]
    session: dict[str, Value] = field(default_factory=dict)
    suggestions: list[dict[str, str]] = field(default_factory=list)
    pending: PendingHear | None = None

    @property
    def globals(self) -> dict[str, Value]:
        """The variables of the dialog the conversation started in."""
        return self.frames[0].variables if self.frames else {}

    @property
    def waiting(self) -> bool:
        return self.pending is not None

    def to_data(self) -> dict[str, Value]:
        return {
            "format": FORMAT,
            "dialog": self.dialog,
            "version": self.version,
            "frames": [f.to_data() for f in self.frames],
            "session": dict(self.session),
            "suggestions": [dict(s) for s in self.suggestions],
            "pending": self.pending.to_data() if self.pending else None,
        }

    @classmethod
    def from_data(cls, data: object) -> State:
        """Rebuild a state; malformed data is a ValueError, never a half-built state."""
        raw = _mapping(data, "state")
        if raw.get("format") != FORMAT:
            raise ValueError(f"unsupported state format {raw.get('format')!r}")
        frames = raw.get("frames")
        session = raw.get("session", {})
        suggestions = raw.get("suggestions", [])
        if not isinstance(frames, list) or not isinstance(session, dict):
            raise ValueError("state frames must be a list and session an object")
        if not isinstance(suggestions, list):
            raise ValueError("state suggestions must be a list")
        pending = raw.get("pending")
        return cls(
            dialog=_text(raw, "dialog"),
            version=_int(raw, "version"),
            frames=[Frame.from_data(f) for f in frames],
            session=dict(session),
            suggestions=[_suggestion(s) for s in suggestions],
            pending=PendingHear.from_data(pending) if pending is not None else None,
        )


def _mapping(data: object, what: str) -> dict[str, Value]:
    if not isinstance(data, dict):
        raise ValueError(f"{what} must be an object")
    return data


def _text(raw: dict[str, Value], key: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str):
        raise ValueError(f"{key} must be text")
    return value


def _int(raw: dict[str, Value], key: str) -> int:
    value = raw.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{key} must be a whole number")
    return value


def _suggestion(data: object) -> dict[str, str]:
    raw = _mapping(data, "suggestion")
    return {"text": _text(raw, "text"), "label": _text(raw, "label")}

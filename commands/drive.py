"""Drive commands: path rules, upload and delete, the drive area of dialog keywords (WRITE,
READ, LIST, DELETE FILE, SEND FILE) and the blob collector.

Paths are relative, `/`-separated and normalised to NFC; what could step outside a drive or
be read differently by another system is refused (`normalise_path`). A path resolves in
the actor's private drive, or, when its first segment ends in `.gbai`, in the shared space
of bot packages, which admins write and every user reads (`resolve`).

Content is stored in the blob store first and the metadata event saved after it: a crash
in between leaves a blob no read model names, which `collect_garbage` removes once it is
older than its grace period. Whether a path is a folder, or lies below a file, is read from
the drive read model (`DriveIndex`): read-your-writes makes it current for a writer's own
earlier requests.
"""

from __future__ import annotations

import mimetypes
import re
import time
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol
from urllib.parse import quote

from commands.fields import InvalidField
from commands.ports import (
    Blob,
    BlobMissing,
    BlobStore,
    ConcurrencyConflict,
    EventStore,
    NotFound,
    Saved,
)
from commands.turn import EVENT_OVERHEAD, TurnContext
from domain.basic import PlatformError
from domain.basic.values import encoded_size
from domain.common import Actor, Conflict, Forbidden
from domain.drive import (
    BOTS_SPACE,
    PACKAGE_SUFFIX,
    DriveFile,
    file_id,
    is_package_path,
    user_space,
)
from domain.text import clean

MAX_PATH_BYTES = 1024
MAX_SEGMENT_BYTES = 255
MAX_CONTENT_TYPE = 200
DEFAULT_CONTENT_TYPE = "application/octet-stream"
UPLOAD_ATTEMPTS = 5  # saves retried when another upload to the same file won the race

# Characters that are no `/`, `\` or `.` but look like one, or become one under
# compatibility normalisation (NFKC), which other systems apply: `．．` would be `..` there.
_SLASH_LIKE = frozenset("\u2215\u2044\u29f8\u29f9\u2216\u29f5\u2571\u2572\u3033\u3035")
_CONTENT_TYPE = re.compile(
    r"[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}"
    r"(?:; ?charset=[a-z0-9][a-z0-9_.:+-]{0,39})?"
)

Kind = Literal["file", "folder"]


def _problem(c: str) -> str | None:
    """Why a character may not be in a path (None: it may)."""
    code = ord(c)
    if c == "\\":
        return "a backslash (\\)"
    if code == 0:
        return "the NUL character (U+0000)"
    if code < 0x20 or 0x7F <= code <= 0x9F:
        return f"a control character (U+{code:04X})"
    if 0xD800 <= code <= 0xDFFF:
        return f"a lone surrogate (U+{code:04X})"
    if code < 0x80:
        return None
    if c in _SLASH_LIKE:
        return f"U+{code:04X} ({unicodedata.name(c, 'a slash look-alike')}), which looks like /"
    folded = unicodedata.normalize("NFKC", c)
    if "/" in folded or "\\" in folded:
        return f"U+{code:04X} ({unicodedata.name(c, '?')}), which stands for a slash"
    if folded and set(folded) == {"."}:
        return f"U+{code:04X} ({unicodedata.name(c, '?')}), which stands for a dot"
    return None


class PathError(InvalidField):
    """A path the drive refuses (400, naming the rule)."""

    def __init__(self, path: str, reason: str, field: str = "path") -> None:
        shown = path if len(path) <= 80 else path[:80] + "…"
        super().__init__(field, f"`{field}` {shown!r}: {reason}")
        self.reason = reason


@dataclass(frozen=True)
class DrivePath:
    """A normalised path: `path` without a trailing `/` ("" is the top folder); `folder` when
    the path was given with a trailing `/`, naming a folder."""

    path: str
    folder: bool = False

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    def child(self, name: str) -> str:
        return f"{self.path}/{name}" if self.path else name


def normalise_path(raw: str, *, field: str = "path", allow_root: bool = False) -> DrivePath:
    """The path in NFC, checked: relative (no leading `/`), segments separated by `/`, no
    empty, `.` or `..` segment, no backslash, NUL, control character (C0, DEL, C1) or
    look-alike of `/` or `.`, segments of at most 255 UTF-8 bytes and the whole of at most
    1024. A trailing `/` names a folder. Raises PathError."""
    text = unicodedata.normalize("NFC", raw)
    if text == "" or (allow_root and text == "/"):
        if allow_root:
            return DrivePath("", folder=True)
        raise PathError(raw, "the path is empty", field)
    if text.startswith("/"):
        raise PathError(raw, "absolute paths are refused: a path starts with a name", field)
    for c in text:
        problem = _problem(c)
        if problem is not None:
            raise PathError(raw, f"a path may not contain {problem}", field)
    if len(text.encode()) > MAX_PATH_BYTES:
        raise PathError(raw, f"the path is longer than {MAX_PATH_BYTES} bytes (UTF-8)", field)
    folder = text.endswith("/")
    body = text[:-1] if folder else text
    for segment in body.split("/"):
        if segment == "":
            raise PathError(raw, "the path has an empty segment (`//`)", field)
        if segment in (".", ".."):
            raise PathError(raw, f"`{segment}` segments are refused", field)
        if len(segment.encode()) > MAX_SEGMENT_BYTES:
            raise PathError(raw, f"a name is longer than {MAX_SEGMENT_BYTES} bytes (UTF-8)", field)
    return DrivePath(body, folder)


def sanitise_filename(raw: str) -> str:
    """An uploaded file's name as the drive stores it: its last path segment (`/` or `\\`),
    without control characters, NFC, trimmed. An empty or dot name is refused (PathError);
    the name is then checked as a path segment."""
    name = re.split(r"[/\\]", raw)[-1]
    name = "".join(c for c in name if _problem(c) is None or c in ".")
    name = unicodedata.normalize("NFC", name).strip()
    if name in ("", ".", ".."):
        raise PathError(raw, "the file's name is empty once sanitised; name the file", "filename")
    normalise_path(name, field="filename")
    return name


def content_type_of(name: str, declared: str | None, charset: str | None = None) -> str:
    """The declared media type when it is a plain `type/subtype` (with a charset) other than
    the generic application/octet-stream, else the one the name's extension suggests, else
    application/octet-stream."""
    guessed, _ = mimetypes.guess_type(name, strict=False)
    if declared and not (guessed and declared.strip().lower() == DEFAULT_CONTENT_TYPE):
        value = declared.strip().lower()
        if charset and "charset" not in value:
            value = f"{value}; charset={charset.strip().lower()}"
        if _CONTENT_TYPE.fullmatch(value) and len(value) <= MAX_CONTENT_TYPE:
            return value
        value = declared.split(";", 1)[0].strip().lower()
        if _CONTENT_TYPE.fullmatch(value):
            return value
    return guessed or DEFAULT_CONTENT_TYPE


def ancestors(path: str) -> list[str]:
    """The folders holding `path`, outermost first: `a/b/c` -> `a`, `a/b`."""
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def download_url(path: str) -> str:
    """Where a file (as the actor addresses it) is downloaded."""
    return f"/api/drive/{quote(path, safe='/')}/download"


# --- spaces and who may do what -------------------------------------------------------------


def resolve(actor: Actor, path: str) -> str:
    """The space `path` lives in for this actor: the shared bot packages, or their drive."""
    return BOTS_SPACE if path and is_package_path(path) else user_space(actor.email)


def may_read(actor: Actor, space: str) -> bool:
    return space in (BOTS_SPACE, user_space(actor.email))


def check_write(actor: Actor, space: str, path: str) -> None:
    """Forbidden unless the actor may write there: their own drive; packages: admins."""
    if space == BOTS_SPACE:
        if not actor.is_admin:
            top = path.split("/", 1)[0]
            raise Forbidden(
                f"{top} is a bot package (a path whose first segment ends in {PACKAGE_SUFFIX}):"
                " only admins write there; every user may read it"
            )
        return
    if space != user_space(actor.email):
        raise Forbidden("another user's drive")


# --- the read model, as commands see it -----------------------------------------------------


@dataclass(frozen=True)
class StoredFile:
    """A live file's current content, as the read model holds it."""

    space: str
    path: str
    sha256: str
    size: int
    content_type: str
    version: int


class DriveIndex(Protocol):
    """What commands read of the drive read model (projections.drive.DriveReadModel)."""

    def kind(self, space: str, path: str) -> Kind | None:
        """Whether a live file or a folder (holding live files) is at the path."""
        ...

    def file_among(self, space: str, paths: Sequence[str]) -> str | None:
        """One of `paths` that is a live file (None: none is)."""
        ...

    def files_under(self, space: str, folder: str) -> list[str]:
        """Every live file below the folder, at any depth."""
        ...

    def file(self, space: str, path: str) -> StoredFile | None: ...

    def names(self, space: str, folder: str, limit: int) -> list[tuple[str, Kind]]:
        """The entries directly in the folder ("" the top), folders first, by name."""
        ...


@dataclass(frozen=True)
class Upload:
    path: str  # normalised, in `space`
    blob: Blob
    content_type: str


class DriveCommands:
    """Uploads and deletes. Content goes to `blobs` first (the API streams it there with
    `writer()`); `upload` then records the files in one save."""

    def __init__(
        self, store: EventStore, blobs: BlobStore, index: DriveIndex, max_upload_bytes: int
    ) -> None:
        self.store = store
        self.blobs = blobs
        self.index = index
        self.max_upload_bytes = max_upload_bytes

    def target(self, actor: Actor, raw: str, *, allow_root: bool = False) -> tuple[str, DrivePath]:
        """Where a write goes (space, path), refused (Forbidden, PathError) before any
        content is read."""
        found = normalise_path(raw, allow_root=allow_root)
        space = resolve(actor, found.path)
        check_write(actor, space, found.path)
        return space, found

    def is_folder(self, space: str, path: str) -> bool:
        """The top, a bot package itself (`sales.gbai`), or a folder that holds files."""
        if path == "" or (space == BOTS_SPACE and "/" not in path):
            return True
        return self.index.kind(space, path) == "folder"

    def check_writable(self, space: str, path: str) -> None:
        """Conflict when the path is a folder, or lies below a file; PathError for a file
        named like a bot package at the top of a drive (it would be out of its reach)."""
        if (space == BOTS_SPACE) != is_package_path(path) or (
            space == BOTS_SPACE and "/" not in path
        ):
            raise PathError(
                path,
                f"a name ending in {PACKAGE_SUFFIX} at the top is a bot package, a folder:"
                f" upload into it ({path.split('/')[0]}/)",
                "filename",
            )
        if self.index.kind(space, path) == "folder":
            raise Conflict(f"{path} is a folder: upload into it (end the path with /)")
        blocking = self.index.file_among(space, ancestors(path))
        if blocking is not None:
            raise Conflict(f"{blocking} is a file: nothing can be stored below it")

    def upload(self, actor: Actor, space: str, files: Sequence[Upload]) -> Saved:
        """Records the stored blobs as new versions of their files, in one save."""
        if not files:
            raise ValueError("nothing to record")
        for item in files:
            check_write(actor, space, item.path)
            self.check_writable(space, item.path)
        for attempt in range(1, UPLOAD_ATTEMPTS + 1):
            changed: dict[str, DriveFile] = {}
            for item in files:
                drive_file = changed.get(item.path) or self._load_or_open(space, item.path)
                drive_file.upload(item.blob.sha256, item.blob.size, item.content_type, actor.email)
                changed[item.path] = drive_file
            try:
                return self.store.save(*changed.values())
            except ConcurrencyConflict:
                if attempt == UPLOAD_ATTEMPTS:
                    raise
                time.sleep(0.005 * attempt)
        raise AssertionError("unreachable")

    def delete(self, actor: Actor, raw: str) -> Saved:
        """Deletes a file, or a folder and every file below it, in one save; NotFound when
        the path holds neither."""
        found = normalise_path(raw)
        space = resolve(actor, found.path)
        check_write(actor, space, found.path)
        paths = [] if found.folder else [found.path]
        paths += self.index.files_under(space, found.path)
        doomed = [f for p in paths if (f := self._load(space, p)) is not None and f.live]
        if not doomed:
            raise NotFound(found.path)
        for drive_file in doomed:
            drive_file.delete(actor.email)
        return self.store.save(*doomed)

    def _load(self, space: str, path: str) -> DriveFile | None:
        try:
            found = self.store.get(file_id(space, path))
        except NotFound:
            return None
        return found if isinstance(found, DriveFile) else None

    def _load_or_open(self, space: str, path: str) -> DriveFile:
        return self._load(space, path) or DriveFile.open(space, path)


# --- dialog keywords ------------------------------------------------------------------------

LIST_LIMIT = 1000


class DialogDriveKeywords:
    """The drive area's KeywordProvider: `DialogDriveKeywords(blobs, index)(turn)`."""

    def __init__(self, blobs: BlobStore, index: DriveIndex) -> None:
        self.blobs = blobs
        self.index = index

    def __call__(self, turn: TurnContext) -> DialogDrive:
        return DialogDrive(turn, self.blobs, self.index)


class DialogDrive:
    """The drive area of dialog keywords for one turn, on the bot's package `{bot}.gbai/`.

    Paths are relative to the package (a leading `/` or `{bot}.gbai/` is the package
    itself) and never leave it. WRITE stores the text (UTF-8) and saves the file with the
    turn; READ gives a file's text (at most GB_TURN_MAX_VALUE_BYTES); LIST the names in a
    folder (subfolders end with `/`); DELETE FILE removes a file (nothing when it is not
    there); SEND FILE adds a reply part naming the file and its download link. What the turn
    wrote, READ and LIST see at once.
    """

    def __init__(self, turn: TurnContext, blobs: BlobStore, index: DriveIndex) -> None:
        self.turn = turn
        self.blobs = blobs
        self.index = index
        self.package = f"{turn.session.bot_id}{PACKAGE_SUFFIX}"
        self.files: dict[str, DriveFile] = {}  # loaded or made by this turn, by path

    # --- paths ------------------------------------------------------------------------------

    def _path(self, keyword: str, given: str, *, folder: bool = False) -> str:
        """The package path `given` names (a file's, or with `folder` a folder's, where the
        package itself is "" or `/`); PlatformError naming the rule it breaks."""
        shown = clean(str(given))[:80]
        text = clean(str(given)).strip().lstrip("/")
        if text == self.package or text.startswith(self.package + "/"):
            text = text[len(self.package) + 1 :]
        if not text:
            if folder:
                return self.package
            raise PlatformError(f"{keyword} needs a file's path")
        try:
            found = normalise_path(text)
            full = normalise_path(f"{self.package}/{found.path}").path
        except PathError as e:
            raise PlatformError(f"{keyword} {shown!r}: {e.reason}") from None
        if found.folder and not folder:
            raise PlatformError(f"{keyword} {shown!r}: a file's path does not end with /")
        return full

    def _file(self, path: str) -> DriveFile | None:
        """The file's aggregate as this turn sees it (None: never stored)."""
        if path in self.files:
            return self.files[path]
        try:
            found = self.turn.store.get(file_id(BOTS_SPACE, path))
        except NotFound:
            return None
        if not isinstance(found, DriveFile):
            raise PlatformError(f"{path} is unreadable")
        self.files[path] = found
        return found

    def _track(self, drive_file: DriveFile, size: int) -> None:
        if any(a is drive_file for a in self.turn.writes.aggregates):
            self.turn.writes.charge(size)
        else:
            self.turn.writes.add(drive_file, size)

    def _pending_live(self) -> dict[str, DriveFile]:
        return {p: f for p, f in self.files.items() if f.live}

    def _current(self, keyword: str, path: str) -> StoredFile:
        """The file's content now (this turn's writes included); PlatformError if none."""
        if path in self.files:
            pending = self.files[path]
            if pending.live:
                return StoredFile(
                    BOTS_SPACE,
                    path,
                    pending.sha256,
                    pending.size,
                    pending.content_type,
                    pending.file_version,
                )
        else:
            stored = self.index.file(BOTS_SPACE, path)
            if stored is not None:
                return stored
        raise PlatformError(f"{keyword}: there is no file {self._shown(path)}")

    def _shown(self, path: str) -> str:
        return path[len(self.package) + 1 :] or "/"

    # --- keywords ---------------------------------------------------------------------------

    def write_file(self, path: str, content: str) -> None:
        full = self._path("WRITE", path)
        data = clean(str(content)).encode()
        limit = self.turn.limits.max_value_bytes
        if len(data) > limit:
            raise PlatformError(
                f"WRITE: the content is larger than {limit:,} bytes (GB_TURN_MAX_VALUE_BYTES)"
            )
        if self.index.kind(BOTS_SPACE, full) == "folder" or any(
            p.startswith(full + "/") for p in self._pending_live()
        ):
            raise PlatformError(f"WRITE: {self._shown(full)} is a folder")
        above = ancestors(full)
        pending = self._pending_live()
        blocking = next((p for p in above if p in pending), None) or self.index.file_among(
            BOTS_SPACE, [p for p in above if p not in self.files]
        )
        if blocking is not None:
            raise PlatformError(f"WRITE: {self._shown(blocking)} is a file, not a folder")
        blob = self.blobs.put(data)
        drive_file = self._file(full) or DriveFile.open(BOTS_SPACE, full)
        self.files[full] = drive_file
        kind = content_type_of(full, None)
        if kind == DEFAULT_CONTENT_TYPE or kind.startswith("text/"):
            kind = f"{'text/plain' if kind == DEFAULT_CONTENT_TYPE else kind}; charset=utf-8"
        drive_file.upload(blob.sha256, blob.size, kind, self.turn.session.user_id)
        self._track(drive_file, 2 * encoded_size([full, kind]) + 2 * EVENT_OVERHEAD)

    def read_file(self, path: str) -> str:
        full = self._path("READ", path)
        found = self._current("READ", full)
        limit = self.turn.limits.max_value_bytes
        if found.size > limit:
            raise PlatformError(
                f"READ: {self._shown(full)} is larger than {limit:,} bytes"
                " (GB_TURN_MAX_VALUE_BYTES)"
            )
        try:
            data = b"".join(self.blobs.read(found.sha256))
        except BlobMissing:
            raise PlatformError(f"READ: the content of {self._shown(full)} is missing") from None
        return clean(data.decode("utf-8", errors="replace"))

    def list_files(self, folder: str) -> list[str]:
        full = self._path("LIST", folder, folder=True)
        entries = dict(self.index.names(BOTS_SPACE, full, LIST_LIMIT + 1))
        prefix = full + "/"
        for path, drive_file in self.files.items():
            if not path.startswith(prefix):
                continue
            rest = path[len(prefix) :]
            name, below, _ = rest.partition("/")
            if below:
                if drive_file.live:
                    entries[name] = "folder"
            elif drive_file.live:
                entries[name] = "file"
            else:
                entries.pop(name, None)
        emptied = {
            path[len(prefix) :].partition("/")[0]
            for path, drive_file in self.files.items()
            if path.startswith(prefix) and "/" in path[len(prefix) :] and not drive_file.live
        }
        for name in emptied:  # a folder whose last files this turn deleted is gone
            under = f"{prefix}{name}"
            stored = self.index.files_under(BOTS_SPACE, under)
            left = [p for p in stored if p not in self.files or self.files[p].live]
            pending = [p for p, f in self.files.items() if p.startswith(under + "/") and f.live]
            if not left and not pending:
                entries.pop(name, None)
        if len(entries) > LIST_LIMIT:
            raise PlatformError(f"LIST: the folder holds more than {LIST_LIMIT:,} entries")
        ordered = sorted(entries.items(), key=lambda item: (item[1] != "folder", item[0]))
        return [f"{name}/" if kind == "folder" else name for name, kind in ordered]

    def delete_file(self, path: str) -> None:
        full = self._path("DELETE FILE", path)
        drive_file = self._file(full)
        if drive_file is None or not drive_file.live:
            if self.index.kind(BOTS_SPACE, full) == "folder":
                raise PlatformError(f"DELETE FILE: {self._shown(full)} is a folder")
            return
        drive_file.delete(self.turn.session.user_id)
        self._track(drive_file, encoded_size([full]) + EVENT_OVERHEAD)

    def send_file(self, path: str, caption: str) -> str:
        full = self._path("SEND FILE", path)
        found = self._current("SEND FILE", full)
        name = full.rsplit("/", 1)[-1]
        link = f"{name}: {download_url(found.path)}"
        text = clean(str(caption)).strip() if caption else ""
        return f"{text}\n{link}" if text else link


# --- the blob collector ---------------------------------------------------------------------


@dataclass(frozen=True)
class Collected:
    removed: int  # blobs no read model names, older than the grace period
    kept: int  # blobs named by a read model, or too recent to judge
    partial: int  # abandoned uploads removed


def collect_garbage(
    blobs: BlobStore,
    referenced: Callable[[], Iterable[str]],
    grace: float,
    now: float | None = None,
) -> Collected:
    """Removes the blobs that `referenced()` does not name, stored more than `grace` seconds
    ago, and uploads abandoned more than `grace` seconds ago. The blobs are listed before the
    references are read: a blob stored (and named) after the listing is never a candidate."""
    cutoff = (time.time() if now is None else now) - grace
    candidates = list(blobs.stored())
    named = set(referenced())
    removed = kept = 0
    for sha, at in candidates:
        if sha in named or at >= cutoff:
            kept += 1
            continue
        blobs.delete(sha)
        removed += 1
    return Collected(removed, kept, blobs.clean_partial(grace))

"""Drive endpoints: list, upload (multipart, streamed to the blob store), download (streamed,
with validators and single ranges) and delete.

The drive path is read from the request's raw path and percent-decoded once, here: the
router's own decoding and normalisation (it drops a trailing `/` and empty segments) would
hide what the client sent. A path ending in `/download` is a download of the file before
it (a `{path:path}` parameter cannot be followed by a segment); a folder that is named
`download` is listed with a trailing `/` (`GET /api/drive/reports/download/`).
"""

from __future__ import annotations

import email.utils
import re
import unicodedata
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal, cast
from urllib.parse import quote, unquote_to_bytes

import anyio
import anyio.to_thread
from litestar import Controller, Request, Response, delete, get, post
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import Example, Operation
from litestar.params import Parameter, QueryParameter
from litestar.response import Stream
from multipart import MultipartError, MultipartSegment, ParserLimitReached, PushMultipartParser
from multipart import parse_options_header as _parse_options

from api.deps import Provided
from api.errors import ApiError, ErrorEnvelope, bad_request, envelope, not_found
from api.examples import ANA, CREATED_AT, LAGGING, UPDATED_AT, examples
from api.http import Limit, Offset, Writes, actor_of, written
from commands.drive import (
    DriveCommands,
    DrivePath,
    Upload,
    content_type_of,
    normalise_path,
    sanitise_filename,
)
from commands.ports import Blob, BlobMissing, BlobTooLarge, BlobWriter, NotFound
from domain.common import Actor
from projections.core import Page, ReadStore
from projections.drive import (
    DriveEntry,
    FolderMissing,
    file_entries,
    file_for_read,
    file_version_entry,
    file_versions,
    list_folder,
)

PREFIX = "/api/drive"
DOWNLOAD = "/download"
MAX_FILES = 100  # file parts in one upload
MULTIPART_SLACK = 1024 * 1024  # what an upload's body may hold besides its files' bytes
WRITE_BATCH = 1024 * 1024  # bytes handed to a writer (in a worker thread) at a time

SHA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
FILE = {
    "name": "q1.pdf",
    "path": "reports/q1.pdf",
    "type": "file",
    "size": 48213,
    "content_type": "application/pdf",
    "sha256": SHA,
    "version": 2,
    "modified_at": UPDATED_AT,
    "modified_by": ANA,
}
FOLDER = {
    "name": "reports",
    "path": "reports",
    "type": "folder",
    "size": 48213,
    "content_type": None,
    "sha256": None,
    "version": None,
    "modified_at": None,
    "modified_by": None,
}
PACKAGE = {**FOLDER, "name": "sales.gbai", "path": "sales.gbai", "size": 2310}
FIRST = {**FILE, "version": 1, "modified_at": CREATED_AT, "size": 47011}


def _page(*items: dict[str, Any]) -> dict[str, Any]:
    return {
        "data": list(items),
        "pagination": {"total": len(items), "limit": 50, "offset": 0, "has_more": False},
    }


DrivePathParam = Annotated[
    Path,
    Parameter(
        description="A path in your drive, `/`-separated and relative (`reports/q1.pdf`); a"
        " first segment ending in `.gbai` is a bot package (`sales.gbai/sales.gbdialog/`)."
        " Refused with 400: `..` or `.` segments, empty segments, a leading `/`,"
        " backslashes, control characters, look-alikes of `/` or `.`, a name over 255"
        " bytes or a path over 1024 (UTF-8). Percent-encoding is decoded once",
        examples=[
            Example(summary="A file", value="reports/q1.pdf"),
            Example(summary="A folder", value="reports/"),
            Example(summary="A bot's dialogs", value="sales.gbai/sales.gbdialog/"),
        ],
    ),
]
Recursive = Annotated[
    bool,
    Parameter(
        description="List everything below the folder, at any depth (default: its top level)",
        examples=[Example(summary="The whole tree", value=True)],
    ),
]
KindParam = Annotated[
    Literal["file", "folder"] | None,
    QueryParameter(
        name="type",
        description="Only files, or only folders",
        examples=[Example(summary="Only files", value="file")],
    ),
]
Versions = Annotated[
    bool,
    Parameter(
        description="On a file's path: list its versions, newest first",
        examples=[Example(summary="The file's history", value=True)],
    ),
]
VersionParam = Annotated[
    int | None,
    Parameter(
        ge=1,
        le=2**53 - 1,
        description="A version of the file: its entry, or with `/download` its content"
        " (default: the current one; ignored with `versions=true`)",
        examples=[Example(summary="The first version", value=1)],
    ),
]

WHO = (
    "Your drive is yours alone: a path always names a file of your own drive, or of a bot"
    " package (a first segment ending in `.gbai`), which every user may read and only"
    " admins change."
)


# --- the path as the client sent it -------------------------------------------------------


def raw_drive_path(request: Request[Any, Any, Any]) -> str:
    """The drive path of the request: its raw path after `/api/drive/`, percent-decoded
    once (`%252e` is the text `%2e`), trailing `/` kept."""
    raw = request.scope.get("raw_path") or request.scope["path"].encode()
    if isinstance(raw, str):
        raw = raw.encode()
    head = PREFIX.encode()
    if not raw.startswith(head):
        raise bad_request("the request path is malformed", "path")
    rest = raw[len(head) :]
    if rest.startswith(b"/"):
        rest = rest[1:]
    try:
        return unquote_to_bytes(rest).decode("utf-8")
    except UnicodeDecodeError:
        raise bad_request("the path is not valid UTF-8 once percent-decoded", "path") from None


# --- download ------------------------------------------------------------------------------

_RANGE = re.compile(r"bytes[ \t]*=[ \t]*([0-9]*)[ \t]*-[ \t]*([0-9]*)[ \t]*", re.IGNORECASE)
_TAG = re.compile(r'[ \t]*(?:(W/)?"([\x21\x23-\x7e\x80-\xff]*)")[ \t]*(?:,|\Z)')


def _http_date(stamp: str) -> tuple[str, int]:
    """RFC 9110's HTTP-date of an RFC 3339 stamp, and its whole seconds since the epoch."""
    when = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    return email.utils.format_datetime(when, usegmt=True), int(when.timestamp())


def _tags(value: str) -> list[str] | None:
    """The opaque tags of an If-None-Match / If-Range list, weak or not; None: malformed."""
    tags: list[str] = []
    at = 0
    while at < len(value):
        found = _TAG.match(value, at)
        if found is None or found.end() == at:
            return None
        tags.append(found.group(2))
        at = found.end()
    return tags


def _none_match(request: Request[Any, Any, Any], sha256: str) -> bool:
    """Whether If-None-Match matches (weak comparison: `*`, or a listed tag)."""
    fields = request.headers.getall("if-none-match", [])
    if not fields:
        return False
    joined = ", ".join(fields)
    if joined.strip(" \t") == "*":
        return True
    tags = _tags(joined)
    return tags is not None and sha256 in tags


def _modified_since(request: Request[Any, Any, Any], modified: int) -> bool:
    """False when If-Modified-Since is at or after the last modification (a 304)."""
    value = request.headers.get("if-modified-since")
    if value is None:
        return True
    try:
        since = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return True
    return since.tzinfo is None or modified > int(since.timestamp())


def _if_range(request: Request[Any, Any, Any], sha256: str, last_modified: str) -> bool:
    """Whether a Range may be honoured: no If-Range, or it names the current content (its
    strong tag, or exactly its Last-Modified date)."""
    value = request.headers.get("if-range")
    if value is None:
        return True
    value = value.strip()
    if value.startswith('"'):
        return value == f'"{sha256}"'
    return value == last_modified


Span = tuple[int, int]


def _range(header: str, size: int) -> Span | None | Literal["unsatisfiable"]:
    """One `bytes=a-b`, `a-` or `-n` range as (first, last); None when the header is to be
    ignored (malformed, another unit, several ranges: the whole content is sent)."""
    found = _RANGE.fullmatch(header)
    if found is None:
        return None
    first, last = found.group(1), found.group(2)
    if not first and not last:
        return None
    if not first:  # the last n bytes
        count = int(last)
        if count == 0 or size == 0:
            return "unsatisfiable"
        return max(0, size - count), size - 1
    start = int(first)
    end = int(last) if last else size - 1
    if last and end < start:
        return None
    if start >= size:
        return "unsatisfiable"
    return start, min(end, size - 1)


def content_disposition(name: str) -> str:
    """`attachment` with an ASCII fallback and the UTF-8 name (RFC 6266, RFC 8187)."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    ascii_name = re.sub(r'[\x00-\x1f\x7f"\\;]', "_", ascii_name).strip() or "download"
    encoded = quote(name, safe="!#$&+-.^_`|~")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{encoded}"


def _download(
    request: Request[Any, Any, Any],
    drive: DriveCommands,
    read: ReadStore,
    actor: Actor,
    raw: str,
    version: int | None,
) -> Response[Any]:
    view = file_for_read(read, actor, raw, version)
    if view is None:
        shown = raw if version is None else f"{raw} version {version}"
        raise not_found(f"file {shown}")
    last_modified, modified = _http_date(view.modified_at)
    headers = {
        "ETag": f'"{view.sha256}"',
        "Last-Modified": last_modified,
        "Accept-Ranges": "bytes",
        "Cache-Control": "private, no-cache",
        "X-Drive-Version": str(view.version),
        "X-Content-Type-Options": "nosniff",
        "Content-Disposition": content_disposition(view.name),
    }
    fresh = _none_match(request, view.sha256)
    if not request.headers.get("if-none-match"):
        fresh = not _modified_since(request, modified)
    if fresh:
        return Response(None, status_code=304, headers=headers)
    span: Span | None = None
    header = request.headers.get("range")
    if header is not None and _if_range(request, view.sha256, last_modified):
        found = _range(header, view.size)
        if found == "unsatisfiable":
            return envelope(
                416,
                f"the range {header[:60]!r} is outside the file ({view.size:,} bytes)",
                headers={"Content-Range": f"bytes */{view.size}"},
            )
        span = found
    start, end = span if span is not None else (0, view.size - 1)
    try:
        chunks: Iterator[bytes] = (
            drive.blobs.read(view.sha256, start, end) if view.size else iter(())
        )
    except BlobMissing:
        raise ApiError(
            404, f"the content of {view.path} is missing from the store (ask an admin)"
        ) from None
    if span is not None:
        headers["Content-Range"] = f"bytes {start}-{end}/{view.size}"
    headers["Content-Length"] = str(max(0, end - start + 1))
    headers["Content-Type"] = view.content_type  # as stored: no charset is made up
    return Stream(
        chunks,
        status_code=206 if span is not None else 200,
        media_type=view.content_type,
        headers=headers,
    )


# --- upload --------------------------------------------------------------------------------


def _filename(segment: MultipartSegment) -> str | None:
    """The part's file name: RFC 8187's `filename*` (UTF-8) when given, else `filename`."""
    header = segment.header("Content-Disposition", "") or ""
    star = re.search(r";[ \t]*filename\*[ \t]*=[ \t]*([^;]+)", header, re.IGNORECASE)
    if star:
        charset, _, rest = star.group(1).strip().partition("'")
        _, _, encoded = rest.partition("'")
        if charset.lower() == "utf-8" and encoded:
            try:
                return unquote_to_bytes(encoded).decode("utf-8")
            except UnicodeDecodeError:
                raise bad_request("the part's filename* is not UTF-8", "filename") from None
    name: str | None = segment.filename
    return name


class _Receiver:
    """One upload's parts, each streamed into a blob writer as it arrives."""

    def __init__(
        self, drive: DriveCommands, space: str, target: DrivePath, folder_mode: bool
    ) -> None:
        self.drive = drive
        self.space = space
        self.target = target
        self.folder_mode = folder_mode
        self.limit = drive.max_upload_bytes
        self.writer: BlobWriter | None = None
        self.batch: list[bytes] = []
        self.batched = 0
        self.current: tuple[str, str] | None = None  # (path, content type) of the open part
        self.files: list[Upload] = []
        self.parts = 0

    async def segment(self, segment: MultipartSegment) -> None:
        self.parts += 1
        filename = _filename(segment)
        if filename is None:
            name = segment.name or "?"
            raise bad_request(
                f"the form field `{name[:40]}` is not a file: an upload takes file parts only"
                ' (Content-Disposition: form-data; name="file"; filename="...")',
                "file",
            )
        if self.parts > MAX_FILES:
            raise bad_request(f"an upload takes at most {MAX_FILES} files", "file")
        if self.folder_mode:
            path = self.target.child(sanitise_filename(filename))
        elif self.parts > 1:
            raise bad_request(
                "only one file is stored at a file's path; end the path with / to upload"
                " several files into that folder",
                "file",
            )
        else:
            path = self.target.path
        normalise_path(path)
        await anyio.to_thread.run_sync(self.drive.check_writable, self.space, path)
        name = path.rsplit("/", 1)[-1]
        self.current = (path, content_type_of(name, segment.content_type, segment.charset))
        self.writer = await anyio.to_thread.run_sync(self.drive.blobs.writer, self.limit)

    async def data(self, chunk: bytes) -> None:
        self.batch.append(bytes(chunk))
        self.batched += len(chunk)
        if self.batched >= WRITE_BATCH:
            await self._flush()

    async def _flush(self) -> None:
        writer, batch = self.writer, self.batch
        self.batch, self.batched = [], 0
        if writer is None or not batch:
            return

        def write() -> None:
            for chunk in batch:
                writer.write(chunk)

        await anyio.to_thread.run_sync(write)

    async def end(self) -> None:
        await self._flush()
        writer, current = self.writer, self.current
        self.writer, self.current = None, None
        if writer is None or current is None:
            return
        blob: Blob = await anyio.to_thread.run_sync(writer.commit)
        self.files.append(Upload(current[0], blob, current[1]))

    async def abort(self) -> None:
        writer, self.writer = self.writer, None
        self.batch, self.batched = [], 0
        if writer is not None:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(writer.abort)


async def _receive(
    request: Request[Any, Any, Any],
    drive: DriveCommands,
    space: str,
    target: DrivePath,
) -> list[Upload]:
    media, options = _parse_options(request.headers.get("content-type", ""))
    if media != "multipart/form-data":
        raise ApiError(
            415,
            "an upload is multipart/form-data (one part per file);"
            f" got {media[:60] or 'no Content-Type'}",
        )
    boundary = options.get("boundary")
    if not boundary:
        raise bad_request("the multipart Content-Type has no boundary", "Content-Type")
    allowed = drive.max_upload_bytes + MULTIPART_SLACK
    declared = request.headers.get("content-length")
    length = -1
    if declared is not None:
        if not (declared.isascii() and declared.isdigit()):
            raise bad_request("Content-Length is not a number", "Content-Length")
        length = int(declared)
        if length > allowed:
            raise _too_large(drive.max_upload_bytes)
    folder_mode = target.folder or await anyio.to_thread.run_sync(
        drive.is_folder, space, target.path
    )
    try:
        parser = PushMultipartParser(
            boundary, content_length=length, max_segment_count=MAX_FILES + 1
        )
    except MultipartError as e:
        raise bad_request(f"the multipart Content-Type is malformed: {e}", "Content-Type") from e
    receiver = _Receiver(drive, space, target, folder_mode)
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > allowed:
                raise _too_large(drive.max_upload_bytes)
            for event in parser.parse(chunk):
                if isinstance(event, MultipartSegment):
                    await receiver.segment(event)
                elif event is None:
                    await receiver.end()
                else:
                    await receiver.data(event)
    except BlobTooLarge:
        await receiver.abort()
        raise _too_large(drive.max_upload_bytes) from None
    except ParserLimitReached as e:
        await receiver.abort()
        raise bad_request(f"the upload is refused: {e} (at most {MAX_FILES} files)") from None
    except MultipartError as e:
        await receiver.abort()
        raise bad_request(f"the multipart body is malformed: {e}") from None
    except BaseException:
        await receiver.abort()
        raise
    if not receiver.files:
        raise bad_request('the upload holds no file: send a part with a filename="..."', "file")
    return receiver.files


def _too_large(limit: int) -> ApiError:
    return ApiError(
        413,
        f"the upload is larger than {limit // (1024 * 1024):,} MiB (GB_MAX_UPLOAD_MB)",
        [{"limit": limit}],
    )


async def _upload(
    request: Request[Any, Any, Any],
    drive: DriveCommands,
    read: ReadStore,
    writes: Writes,
    raw: str,
    *,
    allow_root: bool = False,
) -> Response[Any]:
    actor = actor_of(request)
    space, target = drive.target(actor, raw, allow_root=allow_root)
    if not target.folder and target.path:
        await anyio.to_thread.run_sync(_check_file_target, drive, space, target.path)
    files = await _receive(request, drive, space, target)
    saved = await anyio.to_thread.run_sync(drive.upload, actor, space, files)
    paths = list(dict.fromkeys(f.path for f in files))
    location = f"{PREFIX}/{quote(paths[0], safe='/')}"

    def answer() -> Response[Any]:
        return written(
            writes, saved, location, lambda: file_entries(read, space, paths), status=201
        )

    return await anyio.to_thread.run_sync(answer)


def _check_file_target(drive: DriveCommands, space: str, path: str) -> None:
    """A file's path below another file is refused before the body is read."""
    if not drive.is_folder(space, path):
        drive.check_writable(space, path)


# --- OpenAPI -------------------------------------------------------------------------------

_BINARY = {"schema": {"type": "string", "format": "binary"}}
_DOWNLOAD_HEADERS = {
    name: {"description": why, "schema": {"type": "string"}}
    for name, why in (
        ("ETag", "The content's SHA-256, quoted: a strong validator"),
        ("Last-Modified", "When this version was uploaded"),
        ("Content-Disposition", "attachment, with the file's name (RFC 6266 filename*)"),
        ("Accept-Ranges", "bytes"),
        ("X-Drive-Version", "The version downloaded"),
    )
}


def _documented(
    base: type[Operation], *patches: Callable[[dict[str, Any]], None]
) -> type[Operation]:
    """`base` (an operation class of api.examples), its rendered form then `patch`ed: what
    Litestar cannot generate (a multipart body, a download's media, 206 and 304)."""

    def to_schema(self: Operation) -> dict[str, Any]:
        rendered: dict[str, Any] = base.to_schema(self)
        for patch in patches:
            patch(rendered)
        return rendered

    return type("Documented", (base,), {"to_schema": to_schema})


# What of the path rules a pattern states: no control character (C0, DEL, C1), no backslash.
PATH_PATTERN = "^[^\\u0000-\\u001f\\u007f-\\u009f\\\\]*$"


def _path_docs(rendered: dict[str, Any]) -> None:
    """The drive path is text (Litestar would call a `path` parameter a URI)."""
    for parameter in rendered.get("parameters", []):
        if parameter.get("name") == "path" and parameter.get("in") == "path":
            parameter["schema"] = {"type": "string", "pattern": PATH_PATTERN}


def _get_docs(rendered: dict[str, Any]) -> None:
    responses = rendered.setdefault("responses", {})
    ok = responses.setdefault("200", {"description": "Listed"})
    ok.setdefault("content", {})["*/*"] = _BINARY
    ok["description"] = (
        "A folder's page of entries, a file's entry, a file's versions (JSON), or, for a"
        " path ending in `/download`, the file's content"
    )
    ok["headers"] = _DOWNLOAD_HEADERS
    responses["206"] = {
        "description": "The range asked for (`Content-Range: bytes first-last/size`)",
        "headers": {
            **_DOWNLOAD_HEADERS,
            "Content-Range": {"description": "bytes first-last/size", "schema": {"type": "string"}},
        },
        "content": {"*/*": _BINARY},
    }
    responses["304"] = {
        "description": "`If-None-Match` names the content's ETag (or `*`), or it has not"
        " changed since `If-Modified-Since`: nothing is sent",
        "headers": _DOWNLOAD_HEADERS,
    }


def _upload_docs(rendered: dict[str, Any]) -> None:
    rendered["requestBody"] = {
        "required": True,
        "description": "multipart/form-data, one part per file (its `filename` is used"
        " when the path names a folder)",
        "content": {
            "multipart/form-data": {
                # What the server takes: one or more file parts, whatever their form names
                # (`file` by custom); a part without a filename is refused (400).
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary"}},
                    "additionalProperties": {"type": "string", "format": "binary"},
                    "minProperties": 1,
                }
            }
        },
    }


UPLOAD_RESPONSES: dict[int, ResponseSpec] = {
    409: ResponseSpec(
        ErrorEnvelope,
        description="The path is a folder (upload into it with a trailing `/`), or lies below"
        " a file",
    ),
    413: ResponseSpec(
        ErrorEnvelope,
        description="A file, or the upload as a whole, is larger than `GB_MAX_UPLOAD_MB`"
        " (1024 MiB by default): nothing is stored",
    ),
    415: ResponseSpec(
        ErrorEnvelope, description="The body is not multipart/form-data (one part per file)"
    ),
}
PATH_400 = {
    400: ResponseSpec(
        ErrorEnvelope,
        description="The path is refused: `details` names the rule it breaks (a `..` or `.`"
        " segment, an empty one, a leading `/`, a backslash, a control character, a look-alike"
        " of `/` or `.`, a name over 255 bytes or a path over 1024)",
    )
}
DOWNLOAD_416 = {
    416: ResponseSpec(
        ErrorEnvelope,
        description="A download's `Range` starts past the end of the file"
        " (`Content-Range: bytes */size` gives its size)",
    )
}

UPLOAD_DESCRIPTION = (
    "Uploads files as multipart/form-data, streamed to the store (never held in memory)."
    " One file to a path that does not end with `/` and is not a folder is stored at that"
    " path; to a folder's path (an existing folder, or any path ending with `/`) each file"
    " goes into the folder under its own name (its part's `filename`, reduced to a plain"
    " name). Folders above are implied. A file that exists gets a new version (the previous"
    " ones stay downloadable). Answers `201` with the entries stored and the first one's"
    " `Location`. A file or an upload larger than `GB_MAX_UPLOAD_MB` is `413`, more than"
    f" {MAX_FILES} files or a part that is not a file `400`; if anything fails half way"
    f" nothing is recorded. {WHO} {LAGGING}"
)


class DriveController(Controller):
    path = PREFIX
    tags = ["Drive"]

    @get(
        "/",
        sync_to_thread=True,
        operation_id="listDrive",
        summary="List the top of your drive",
        description="The top folder of your drive: its folders first, then its files, by"
        " name; the bot packages (`*.gbai`), shared by every user, are listed among the"
        " folders. `recursive=true` lists everything at any depth, `type` keeps only files"
        " or only folders. A folder's `size` is the total of the files below it.",
        response_description="A page of entries",
        operation_class=examples(
            response={"A folder and a bot package": _page(PACKAGE, FOLDER)},
        ),
    )
    def list_top(
        self,
        request: Request[Any, Any, Any],
        read: Provided[ReadStore],
        recursive: Recursive = False,
        kind: KindParam = None,
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> Page[DriveEntry]:
        found = list_folder(
            read, actor_of(request), "", recursive=recursive, kind=kind, limit=limit, offset=offset
        )
        assert not isinstance(found, DriveEntry)
        return found

    @get(
        "/{path:path}",
        sync_to_thread=True,
        operation_id="getDrivePath",
        summary="List a folder, show a file, or download it",
        description="On a folder's path: its entries, folders first, then files, by name"
        " (`recursive`, `type`, `limit` and `offset` as at the top). On a file's path: the"
        " file's entry (`version=N`: as it was at version N); with `versions=true`, its"
        " versions, newest first. On a file's path"
        " followed by `/download`: the file's content, streamed, with `Content-Type`,"
        " `Content-Disposition` (its name, RFC 6266), `ETag` (its SHA-256), `Last-Modified`"
        " and `X-Drive-Version`; `version=N` downloads an earlier version. A single `Range`"
        " (`bytes=0-99`, `bytes=100-`, `bytes=-100`) answers `206` with those bytes, one past"
        " the end `416`; several ranges are answered with the whole file (`200`); `If-Range`"
        " is honoured. `If-None-Match` naming the ETag (or `*`), or an `If-Modified-Since`"
        " not older than the file, answers `304`. A folder named `download` is listed with a"
        f" trailing `/` (`reports/download/`). {WHO}",
        response_description="Entries, a file's entry, or its content",
        operation_class=_documented(
            examples(
                response={
                    "A folder's entries": _page(FILE),
                    "A file's entry": FILE,
                    "A file's versions": _page(FILE, FIRST),
                }
            ),
            _get_docs,
            _path_docs,
        ),
        responses={**DOWNLOAD_416, **PATH_400},
    )
    def get_path(
        self,
        request: Request[Any, Any, Any],
        read: Provided[ReadStore],
        drive: Provided[DriveCommands],
        path: DrivePathParam,
        recursive: Recursive = False,
        kind: KindParam = None,
        versions: Versions = False,
        version: VersionParam = None,
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> Response[Page[DriveEntry] | DriveEntry]:
        actor = actor_of(request)
        raw = raw_drive_path(request)
        if raw.endswith(DOWNLOAD):
            answer = _download(request, drive, read, actor, raw[: -len(DOWNLOAD)], version)
            return cast(Response[Page[DriveEntry] | DriveEntry], answer)
        try:
            if versions:
                return Response(file_versions(read, actor, raw, limit, offset))
            if version is not None:
                entry = file_version_entry(read, actor, raw, version)
                if entry is None:
                    raise not_found(f"file {raw} version {version}")
                return Response(entry)
            found = list_folder(
                read, actor, raw, recursive=recursive, kind=kind, limit=limit, offset=offset
            )
        except FolderMissing:
            raise not_found(f"file or folder {raw}") from None
        return Response(found)

    @post(
        "/",
        operation_id="uploadToDriveTop",
        status_code=201,
        summary="Upload files to the top of your drive",
        description="As `POST /api/drive/{path}` with a folder's path, for the top folder:"
        f" each file is stored under its own name. {LAGGING}",
        response_description="The entries stored",
        request_max_body_size=None,
        opt={"streamed_body": True},
        operation_class=_documented(examples(response={"One file stored": [FIRST]}), _upload_docs),
        responses=UPLOAD_RESPONSES,
    )
    async def upload_top(
        self,
        request: Request[Any, Any, Any],
        drive: Provided[DriveCommands],
        read: Provided[ReadStore],
        writes: Provided[Writes],
    ) -> Response[list[DriveEntry]]:
        return await _upload(request, drive, read, writes, "", allow_root=True)

    @post(
        "/{path:path}",
        operation_id="uploadDriveFiles",
        status_code=201,
        summary="Upload files",
        description=UPLOAD_DESCRIPTION,
        response_description="The entries stored",
        request_max_body_size=None,
        opt={"streamed_body": True},
        operation_class=_documented(
            examples(response={"A new version of a file": [FILE]}), _upload_docs, _path_docs
        ),
        responses={**UPLOAD_RESPONSES, **PATH_400},
    )
    async def upload(
        self,
        request: Request[Any, Any, Any],
        drive: Provided[DriveCommands],
        read: Provided[ReadStore],
        writes: Provided[Writes],
        path: DrivePathParam,
    ) -> Response[list[DriveEntry]]:
        return await _upload(request, drive, read, writes, raw_drive_path(request))

    @delete(
        "/{path:path}",
        sync_to_thread=True,
        status_code=204,
        operation_id="deleteDrivePath",
        summary="Delete a file or a folder",
        description="Deletes the file at the path, or the folder and every file below it, at"
        " once; its versions go with it (the events stay in the log). A path that holds"
        f" neither is `404`. Answers `204`. {WHO} {LAGGING}",
        response_description="Deleted",
        operation_class=_documented(examples(), _path_docs),
        responses=PATH_400,
    )
    def delete_path(
        self,
        request: Request[Any, Any, Any],
        drive: Provided[DriveCommands],
        writes: Provided[Writes],
        path: DrivePathParam,
    ) -> Response[None]:
        raw = raw_drive_path(request)
        try:
            saved = drive.delete(actor_of(request), raw)
        except NotFound:
            raise not_found(f"file or folder {raw}") from None
        return written(writes, saved, f"{PREFIX}/{quote(raw, safe='/')}", lambda: None)

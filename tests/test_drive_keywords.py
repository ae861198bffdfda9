"""Dialog keywords on the bot's package (commands.drive.DialogDrive): WRITE, READ, LIST,
DELETE FILE and SEND FILE, first on stand-ins of the stores, then in deployed dialogs on a
real server, where what a dialog writes is a file of `{bot}.gbai/` every user can read."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest

from commands.drive import DialogDrive, Kind, StoredFile, ancestors
from commands.ports import NotFound
from commands.turn import TurnBudget, TurnContext, TurnLimits
from domain.basic import PlatformError
from domain.drive import BOTS_SPACE, DriveFile
from domain.sessions import Session
from infra.blobs import FileBlobStore
from tests.server import UserClient
from tests.test_sessions_api import all_events, deploy, open_session, say

BOT = "helpdesk"
PACKAGE = f"{BOT}.gbai"


class Store:
    """The aggregates saved so far, by id (what a turn reads with `get`)."""

    def __init__(self) -> None:
        self.saved: dict[UUID, Any] = {}

    def get(self, aggregate_id: UUID, version: int | None = None) -> Any:
        if aggregate_id not in self.saved:
            raise NotFound(str(aggregate_id))
        return self.saved[aggregate_id]

    def save(self, *aggregates: Any) -> Any:
        for aggregate in aggregates:
            aggregate.collect_events()
            self.saved[aggregate.id] = aggregate

    def history(self, aggregate_id: UUID) -> Sequence[Any]:
        return []


class Index:
    """The drive read model, from the files given (commands.drive.DriveIndex)."""

    def __init__(self, files: dict[str, StoredFile] | None = None) -> None:
        self.files = dict(files or {})

    def kind(self, space: str, path: str) -> Kind | None:
        if any(path in ancestors(p) for p in self.files):
            return "folder"
        return "file" if path in self.files else None

    def file_among(self, space: str, paths: Sequence[str]) -> str | None:
        return next((p for p in paths if p in self.files), None)

    def files_under(self, space: str, folder: str) -> list[str]:
        return sorted(p for p in self.files if p.startswith(folder + "/"))

    def file(self, space: str, path: str) -> StoredFile | None:
        return self.files.get(path)

    def names(self, space: str, folder: str, limit: int) -> list[tuple[str, Kind]]:
        found: dict[str, Kind] = {}
        for path in self.files:
            if path.startswith(folder + "/"):
                name, below, _ = path[len(folder) + 1 :].partition("/")
                found[name] = "folder" if below else "file"
        return sorted(found.items(), key=lambda i: (i[1] != "folder", i[0]))[:limit]


@pytest.fixture
def blobs(tmp_path: Path) -> FileBlobStore:
    return FileBlobStore(tmp_path / "blobs")


def turn_of(store: Store, limits: TurnLimits | None = None) -> TurnContext:
    session = Session(owner="ana@example.com", bot_id=BOT, user_id="ana@example.com", metadata={})
    return TurnContext(
        store, session, lambda: datetime.now(UTC), TurnBudget(limits or TurnLimits())
    )


def stored(blobs: FileBlobStore, path: str, data: bytes) -> StoredFile:
    blob = blobs.put(data)
    return StoredFile(BOTS_SPACE, f"{PACKAGE}/{path}", blob.sha256, blob.size, "text/plain", 1)


def test_what_a_turn_writes_it_reads_lists_and_deletes_at_once(blobs: FileBlobStore) -> None:
    store = Store()
    turn = turn_of(store)
    old = stored(blobs, "notes/old.txt", b"old")
    drive = DialogDrive(turn, blobs, Index({old.path: old}))
    drive.write_file("notes/today.txt", "hello")
    assert drive.read_file("notes/today.txt") == "hello"
    assert drive.read_file("/notes/old.txt") == "old"
    assert drive.list_files("notes") == ["old.txt", "today.txt"]
    drive.write_file(f"{PACKAGE}/notes/today.txt", "hello again")  # the same file
    assert drive.read_file("notes/today.txt") == "hello again"
    drive.write_file("notes/deep/inner.txt", "inner")
    assert drive.list_files("notes/") == ["deep/", "old.txt", "today.txt"]
    assert drive.list_files("") == ["notes/"]
    assert drive.list_files("/") == ["notes/"]
    drive.delete_file("notes/deep/inner.txt")
    assert drive.list_files("notes") == ["old.txt", "today.txt"]
    with pytest.raises(PlatformError, match="no file notes/deep/inner.txt"):
        drive.read_file("notes/deep/inner.txt")
    drive.delete_file("notes/never-there.txt")  # nothing to delete: nothing happens
    [today, inner] = turn.writes.aggregates
    assert isinstance(today, DriveFile) and today.path == f"{PACKAGE}/notes/today.txt"
    assert today.file_version == 2 and not inner.live
    events: list[Any] = list(today.collect_events())
    assert [type(e).__name__ for e in events] == ["FileCreated", "FileUploaded", "FileUploaded"]
    assert events[-1].by == "ana@example.com"
    assert events[-1].content_type == "text/plain; charset=utf-8"
    assert turn.writes.size > 0
    assert b"".join(blobs.read(events[-1].sha256)) == b"hello again"


def test_a_file_saved_before_is_changed_on_its_own_stream(blobs: FileBlobStore) -> None:
    store = Store()
    first = turn_of(store)
    DialogDrive(first, blobs, Index()).write_file("a.txt", "one")
    store.save(*first.writes.aggregates)
    index = Index({f"{PACKAGE}/a.txt": stored(blobs, "a.txt", b"one")})
    second = turn_of(store)
    drive = DialogDrive(second, blobs, index)
    drive.write_file("a.txt", "two")
    [again] = second.writes.aggregates
    assert again is store.saved[again.id] and again.file_version == 2
    drive.delete_file("a.txt")
    assert not again.live
    with pytest.raises(PlatformError, match="no file a.txt"):
        drive.read_file("a.txt")
    assert "a.txt" not in drive.list_files("")


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("../other.gbai/x.txt", "`..` segments"),
        ("notes/../../x", "`..` segments"),
        ("a\\b.txt", "backslash"),
        ("a\u2215b.txt", "looks like /"),
        ("\uff0e\uff0e/x", "stands for a dot"),
        ("notes//x", "empty segment"),
        ("notes/", "does not end with /"),
        ("", "needs a file's path"),
        ("x" * 300, "255 bytes"),
    ],
)
def test_paths_never_leave_the_package(blobs: FileBlobStore, path: str, reason: str) -> None:
    drive = DialogDrive(turn_of(Store()), blobs, Index())
    with pytest.raises(PlatformError, match="WRITE") as refused:
        drive.write_file(path, "x")
    assert reason in str(refused.value)
    assert not list(blobs.stored())


def test_another_packages_path_stays_inside_this_one(blobs: FileBlobStore) -> None:
    turn = turn_of(Store())
    drive = DialogDrive(turn, blobs, Index())
    drive.write_file("other.gbai/x.txt", "x")
    [made] = turn.writes.aggregates
    assert made.path == f"{PACKAGE}/other.gbai/x.txt"


def test_files_and_folders_do_not_collide(blobs: FileBlobStore) -> None:
    index = Index({f"{PACKAGE}/docs/a.txt": stored(blobs, "docs/a.txt", b"a")})
    drive = DialogDrive(turn_of(Store()), blobs, index)
    with pytest.raises(PlatformError, match="docs is a folder"):
        drive.write_file("docs", "x")
    with pytest.raises(PlatformError, match="docs/a.txt is a file"):
        drive.write_file("docs/a.txt/b.txt", "x")
    drive.write_file("new.txt", "n")
    with pytest.raises(PlatformError, match="new.txt is a file"):
        drive.write_file("new.txt/below.txt", "x")
    with pytest.raises(PlatformError, match="docs is a folder"):
        drive.delete_file("docs")


def test_read_is_bounded_by_the_turns_value_limit(blobs: FileBlobStore) -> None:
    limits = TurnLimits(max_value_bytes=4096)
    big = stored(blobs, "big.txt", b"x" * 5000)
    drive = DialogDrive(turn_of(Store(), limits), blobs, Index({big.path: big}))
    with pytest.raises(PlatformError, match="larger than 4,096 bytes"):
        drive.read_file("big.txt")
    with pytest.raises(PlatformError, match="larger than 4,096 bytes"):
        drive.write_file("big2.txt", "y" * 5000)
    with pytest.raises(PlatformError, match="no file missing.txt"):
        drive.read_file("missing.txt")
    binary = stored(blobs, "b.bin", b"\xff\x00ok")
    drive = DialogDrive(turn_of(Store()), blobs, Index({binary.path: binary}))
    assert drive.read_file("b.bin") == "\ufffd\ufffdok"  # text every store can hold


def test_send_file_answers_a_message_with_the_download_link(blobs: FileBlobStore) -> None:
    report = stored(blobs, "reports/Q1 é.pdf", b"%PDF")
    turn = turn_of(Store())
    drive = DialogDrive(turn, blobs, Index({report.path: report}))
    first = drive.send_file("reports/Q1 é.pdf", "The report")
    drive.write_file("notes.txt", "n")
    assert first == f"The report\nQ1 é.pdf: /api/drive/{PACKAGE}/reports/Q1%20%C3%A9.pdf/download"
    assert drive.send_file("notes.txt", "") == f"notes.txt: /api/drive/{PACKAGE}/notes.txt/download"
    with pytest.raises(PlatformError, match="SEND FILE: there is no file nope.pdf"):
        drive.send_file("nope.pdf", "x")


# --- in deployed dialogs -------------------------------------------------------------------

NOTES = """WRITE "notes/today.txt", "hello " + "world"
TALK READ "notes/today.txt"
files = LIST "notes"
TALK JOIN(files, ",")
HEAR answer
WRITE "notes/today.txt", answer
WRITE "notes/archive/old.txt", "old"
files = LIST "/notes/"
TALK JOIN(files, ",")
HEAR again
DELETE FILE "notes/today.txt"
files = LIST "notes"
TALK JOIN(files, ",")
SEND FILE "notes/archive/old.txt", "Here it is"
TALK "sent"
"""

ESCAPE = """WRITE "../../escape.txt", "out"
TALK "never"
"""


def test_dialogs_write_read_list_and_delete_the_bots_files(
    admin: httpx.Client, make_user: Callable[..., UserClient]
) -> None:
    bot = f"bot{uuid.uuid4().hex[:8]}"
    package = f"{bot}.gbai"
    deploy(admin, bot, "start", NOTES)
    ana = make_user()
    session = open_session(ana, bot)
    assert say(ana, session, "hi")["parts"] == ["hello world", "today.txt"]
    got = ana.get(f"/api/drive/{package}/notes/today.txt/download")
    assert got.status_code == 200 and got.content == b"hello world"
    assert got.headers["content-type"] == "text/plain; charset=utf-8"
    entry = ana.get(f"/api/drive/{package}/notes/today.txt").json()
    assert entry["version"] == 1 and entry["modified_by"] == ana.email

    assert say(ana, session, "bonjour")["parts"] == ["archive/,today.txt"]
    assert ana.get(f"/api/drive/{package}/notes/today.txt/download").content == b"bonjour"
    versions = ana.get(f"/api/drive/{package}/notes/today.txt", params={"versions": "true"})
    assert [v["version"] for v in versions.json()["data"]] == [2, 1]

    parts = say(ana, session, "done")["parts"]
    link = f"/api/drive/{package}/notes/archive/old.txt/download"
    assert parts == ["archive/", f"Here it is\nold.txt: {link}", "sent"]  # in order
    assert ana.get(link).content == b"old"
    assert ana.get(f"/api/drive/{package}/notes/today.txt").status_code == 404
    listed = ana.get(f"/api/drive/{package}", params={"recursive": "true", "type": "file"})
    assert [e["path"] for e in listed.json()["data"]] == [f"{package}/notes/archive/old.txt"]
    # The bot's files are the package's: users read them, only admins change them by hand.
    r = ana.delete(f"/api/drive/{package}/notes/archive/old.txt")
    assert r.status_code == 403


def test_a_dialog_that_tries_to_leave_its_package_fails_and_writes_nothing(
    admin: httpx.Client,
) -> None:
    bot = f"bot{uuid.uuid4().hex[:8]}"
    deploy(admin, bot, "start", ESCAPE)
    session = open_session(admin, bot)
    reply = say(admin, session, "hi")
    assert reply["parts"] == ["Sorry, something went wrong on my side. Please try again."]
    failed = [
        e
        for e in all_events(admin)
        if e["topic"] == "gbserver.sessions.DialogFailed" and e["aggregate_id"] == session
    ]
    assert failed and "`..` segments are refused" in failed[-1]["data"]["message"]
    assert admin.get("/api/drive/escape.txt").status_code == 404
    assert admin.get(f"/api/drive/{bot}.gbai").status_code == 404

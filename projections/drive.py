"""Drive read model: live files, their versions, and the folders that hold them.

A folder exists while it holds a live file at any depth: `drive_folders.files` counts them
(kept on every upload and delete), so folders implied by a path appear with its first file
and disappear with its last. A folder's `size` is the total of the current versions of the
files below it. Content is in the blob store, named by `sha256`; `blob_references` is what
`gbserver drive gc` keeps.

Names sort by their bytes (UTF-8; uppercase before lowercase), the same on both stores.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Literal

import msgspec

from commands.drive import Kind, StoredFile, ancestors, may_read, normalise_path, resolve
from domain.common import Actor, Forbidden, rfc3339
from domain.drive import BOTS_SPACE, user_space
from projections.core import Listing, Page, Projection, ReadStore, Sql, Where, handles

FILE_COLUMNS = (
    "space, path, parent, name, size, content_type, sha256, version, modified_at, modified_by"
)
# Folders and files as one relation: folders rank first.
ENTRIES = (
    "(SELECT space, path, parent, name, 'folder' AS type, 0 AS rank, size,"
    " NULL AS content_type, NULL AS sha256, NULL AS version, NULL AS modified_at,"
    " NULL AS modified_by FROM drive_folders"
    " UNION ALL SELECT space, path, parent, name, 'file' AS type, 1 AS rank, size,"
    " content_type, sha256, version, modified_at, modified_by FROM drive_files) AS entries"
)
ENTRY_COLUMNS = "name, path, type, size, content_type, sha256, version, modified_at, modified_by"


class DriveEntry(msgspec.Struct):
    """A file (its current version, or one of its versions) or a folder."""

    name: str
    path: str
    type: Literal["file", "folder"]
    size: int  # a folder's: the total of the files below it
    content_type: str | None  # a folder's are null, as are sha256, version and modified_*
    sha256: str | None
    version: int | None
    modified_at: str | None
    modified_by: str | None


class DriveFileView(msgspec.Struct, frozen=True):
    """A file's content as stored (for a download, a mail attachment)."""

    space: str
    path: str
    name: str
    size: int
    content_type: str
    sha256: str
    version: int
    modified_at: str
    modified_by: str


def _parent(path: str) -> str:
    return path.rpartition("/")[0]


def _name(path: str) -> str:
    return path.rpartition("/")[2]


def _in(values: Sequence[Any]) -> str:
    return ", ".join("?" for _ in values)


def _order(sql: Sql, column: str) -> str:
    """`column` in byte order on both stores (PostgreSQL's default collation is the locale's)."""
    return f'{column} COLLATE "C"' if sql.dialect == "postgresql" else column


def _below(where: Where, folder: str) -> Where:
    """Paths below `folder` ("" : everything), by prefix (LIKE would need escaping)."""
    if folder:
        prefix = folder + "/"
        where.add("substr(path, 1, ?) = ?", len(prefix), prefix)
    return where


class DriveProjection(Projection):
    name = "drive"
    tables = ("drive_files", "drive_versions", "drive_folders")
    schema = (
        "CREATE TABLE IF NOT EXISTS drive_files ("
        " space TEXT NOT NULL, path TEXT NOT NULL, parent TEXT NOT NULL, name TEXT NOT NULL,"
        " size BIGINT NOT NULL, content_type TEXT NOT NULL, sha256 TEXT NOT NULL,"
        " version BIGINT NOT NULL, modified_at TEXT NOT NULL, modified_by TEXT NOT NULL,"
        " PRIMARY KEY (space, path))",
        "CREATE INDEX IF NOT EXISTS drive_files_parent ON drive_files (space, parent)",
        "CREATE TABLE IF NOT EXISTS drive_versions ("
        " space TEXT NOT NULL, path TEXT NOT NULL, version BIGINT NOT NULL,"
        " sha256 TEXT NOT NULL, size BIGINT NOT NULL, content_type TEXT NOT NULL,"
        " uploaded_at TEXT NOT NULL, uploaded_by TEXT NOT NULL,"
        " PRIMARY KEY (space, path, version))",
        "CREATE TABLE IF NOT EXISTS drive_folders ("
        " space TEXT NOT NULL, path TEXT NOT NULL, parent TEXT NOT NULL, name TEXT NOT NULL,"
        " files BIGINT NOT NULL, size BIGINT NOT NULL, PRIMARY KEY (space, path))",
        "CREATE INDEX IF NOT EXISTS drive_folders_parent ON drive_folders (space, parent)",
    )

    @handles("gbserver.drive.FileUploaded")
    def uploaded(self, sql: Sql, e: Any) -> None:
        at = rfc3339(e.timestamp)
        sql.execute("SELECT size FROM drive_files WHERE space = ? AND path = ?", (e.space, e.path))
        row = sql.fetchone()
        above = ancestors(e.path)
        if row is None:
            sql.execute(
                f"INSERT INTO drive_files ({FILE_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (
                    e.space,
                    e.path,
                    _parent(e.path),
                    _name(e.path),
                    e.size,
                    e.content_type,
                    e.sha256,
                    e.version,
                    at,
                    e.by,
                ),
            )
            if above:
                sql.executemany(
                    "INSERT INTO drive_folders (space, path, parent, name, files, size)"
                    " VALUES (?,?,?,?,1,?) ON CONFLICT (space, path) DO UPDATE SET"
                    " files = drive_folders.files + 1,"
                    " size = drive_folders.size + excluded.size",
                    [(e.space, a, _parent(a), _name(a), e.size) for a in above],
                )
        else:
            sql.execute(
                "UPDATE drive_files SET size = ?, content_type = ?, sha256 = ?, version = ?,"
                " modified_at = ?, modified_by = ? WHERE space = ? AND path = ?",
                (e.size, e.content_type, e.sha256, e.version, at, e.by, e.space, e.path),
            )
            grown = e.size - int(row["size"])
            if grown and above:
                sql.execute(
                    f"UPDATE drive_folders SET size = size + ? WHERE space = ?"
                    f" AND path IN ({_in(above)})",
                    (grown, e.space, *above),
                )
        sql.execute(
            "INSERT INTO drive_versions (space, path, version, sha256, size, content_type,"
            " uploaded_at, uploaded_by) VALUES (?,?,?,?,?,?,?,?)"
            " ON CONFLICT (space, path, version) DO UPDATE SET sha256 = excluded.sha256,"
            " size = excluded.size, content_type = excluded.content_type,"
            " uploaded_at = excluded.uploaded_at, uploaded_by = excluded.uploaded_by",
            (e.space, e.path, e.version, e.sha256, e.size, e.content_type, at, e.by),
        )

    @handles("gbserver.drive.FileDeleted")
    def deleted(self, sql: Sql, e: Any) -> None:
        sql.execute("SELECT size FROM drive_files WHERE space = ? AND path = ?", (e.space, e.path))
        row = sql.fetchone()
        sql.execute("DELETE FROM drive_versions WHERE space = ? AND path = ?", (e.space, e.path))
        if row is None:
            return
        sql.execute("DELETE FROM drive_files WHERE space = ? AND path = ?", (e.space, e.path))
        above = ancestors(e.path)
        if above:
            sql.execute(
                f"UPDATE drive_folders SET files = files - 1, size = size - ?"
                f" WHERE space = ? AND path IN ({_in(above)})",
                (int(row["size"]), e.space, *above),
            )
            sql.execute(
                f"DELETE FROM drive_folders WHERE space = ? AND path IN ({_in(above)})"
                " AND files <= 0",
                (e.space, *above),
            )

    @staticmethod
    def blob_references(sql: Sql) -> Iterator[str]:
        """Every blob a version of a live file names (for `gbserver drive gc`)."""
        sql.execute("SELECT DISTINCT sha256 FROM drive_versions")
        for row in sql.fetchall():
            yield str(row["sha256"])


# --- queries --------------------------------------------------------------------------------


def _version_entry(row: dict[str, Any]) -> DriveEntry:
    return DriveEntry(
        name=_name(row["path"]),
        path=row["path"],
        type="file",
        size=int(row["size"]),
        content_type=row["content_type"],
        sha256=row["sha256"],
        version=int(row["version"]),
        modified_at=row["uploaded_at"],
        modified_by=row["uploaded_by"],
    )


VERSIONS = Listing(
    _version_entry,
    "path, version, sha256, size, content_type, uploaded_at, uploaded_by",
    "drive_versions",
    "version DESC",
)


def _entry_listing(sql: Sql) -> Listing[DriveEntry]:
    return Listing(DriveEntry, ENTRY_COLUMNS, ENTRIES, f"rank, {_order(sql, 'path')}")


def _file_row(sql: Sql, space: str, path: str) -> dict[str, Any] | None:
    sql.execute(
        f"SELECT {FILE_COLUMNS} FROM drive_files WHERE space = ? AND path = ?", (space, path)
    )
    return sql.fetchone()


def _folder_exists(sql: Sql, space: str, path: str) -> bool:
    sql.execute("SELECT 1 AS x FROM drive_folders WHERE space = ? AND path = ?", (space, path))
    return sql.fetchone() is not None


def _entry_of_file(row: dict[str, Any]) -> DriveEntry:
    return DriveEntry(
        name=row["name"],
        path=row["path"],
        type="file",
        size=int(row["size"]),
        content_type=row["content_type"],
        sha256=row["sha256"],
        version=int(row["version"]),
        modified_at=row["modified_at"],
        modified_by=row["modified_by"],
    )


class FolderMissing(Exception):
    """No file or folder at the path (answered 404)."""


def list_folder(
    read: ReadStore,
    actor: Actor,
    raw: str,
    *,
    recursive: bool = False,
    kind: Kind | None = None,
    limit: int = 50,
    offset: int = 0,
) -> Page[DriveEntry] | DriveEntry:
    """The folder's entries, folders first, then by path (its top level, or with
    `recursive` everything below it); a file's path answers its entry. The top folder ("")
    of a user's drive also shows the bot packages (`*.gbai`). FolderMissing when nothing is
    at the path."""
    found = normalise_path(raw, allow_root=True)
    space = resolve(actor, found.path)
    if not may_read(actor, space):
        raise Forbidden("another user's drive")
    where = Where()
    with read.read() as sql:
        if found.path == "":
            where.add("space IN (?, ?)", user_space(actor.email), BOTS_SPACE)
        else:
            where.equal("space", space)
            if not _folder_exists(sql, space, found.path):
                row = None if found.folder else _file_row(sql, space, found.path)
                if row is None:
                    raise FolderMissing(found.path)
                return _entry_of_file(row)
        if recursive:
            _below(where, found.path)
        else:
            where.equal("parent", found.path)
        where.equal("type", kind)
        return _entry_listing(sql).fetch(sql, limit, offset, where)


def file_versions(
    read: ReadStore, actor: Actor, raw: str, limit: int = 50, offset: int = 0
) -> Page[DriveEntry]:
    """A file's versions, newest first (FolderMissing when no file is at the path)."""
    found = normalise_path(raw)
    space = resolve(actor, found.path)
    if not may_read(actor, space):
        raise Forbidden("another user's drive")
    with read.read() as sql:
        if found.folder or _file_row(sql, space, found.path) is None:
            raise FolderMissing(found.path)
        where = Where().equal("space", space).equal("path", found.path)
        return VERSIONS.fetch(sql, limit, offset, where)


def file_for_read(
    read: ReadStore, actor: Actor, raw: str, version: int | None = None
) -> DriveFileView | None:
    """The file at `raw` as the actor addresses it (their drive, or a bot package), at its
    current version or at `version`; None when there is none. Forbidden when the actor may
    not read it. Raises commands.drive.PathError for a path the drive refuses."""
    found = normalise_path(raw)
    if found.folder:
        return None
    space = resolve(actor, found.path)
    if not may_read(actor, space):
        raise Forbidden("another user's drive")
    with read.read() as sql:
        row = _file_row(sql, space, found.path)
        if row is None:
            return None
        if version is not None and version != int(row["version"]):
            sql.execute(
                "SELECT sha256, size, content_type, version, uploaded_at, uploaded_by"
                " FROM drive_versions WHERE space = ? AND path = ? AND version = ?",
                (space, found.path, version),
            )
            old = sql.fetchone()
            if old is None:
                return None
            row = {
                **row,
                **old,
                "modified_at": old["uploaded_at"],
                "modified_by": old["uploaded_by"],
            }
    return DriveFileView(
        space=space,
        path=found.path,
        name=found.name,
        size=int(row["size"]),
        content_type=row["content_type"],
        sha256=row["sha256"],
        version=int(row["version"]),
        modified_at=row["modified_at"],
        modified_by=row["modified_by"],
    )


def file_entries(read: ReadStore, space: str, paths: Sequence[str]) -> list[DriveEntry]:
    """The entries of these files of one space, in the order given (a file deleted since is
    left out)."""
    if not paths:
        return []
    with read.read() as sql:
        sql.execute(
            f"SELECT {FILE_COLUMNS} FROM drive_files WHERE space = ? AND path IN ({_in(paths)})",
            (space, *paths),
        )
        found = {row["path"]: _entry_of_file(row) for row in sql.fetchall()}
    return [found[p] for p in paths if p in found]


def file_version_entry(read: ReadStore, actor: Actor, raw: str, version: int) -> DriveEntry | None:
    """The file's entry as it was at `version` (None: no such file or version)."""
    found = file_for_read(read, actor, raw, version)
    if found is None:
        return None
    return DriveEntry(
        name=found.name,
        path=found.path,
        type="file",
        size=found.size,
        content_type=found.content_type,
        sha256=found.sha256,
        version=found.version,
        modified_at=found.modified_at,
        modified_by=found.modified_by,
    )


def referenced_blobs(read: ReadStore) -> set[str]:
    """Every blob the drive read model names."""
    with read.read() as sql:
        return set(DriveProjection.blob_references(sql))


class DriveReadModel:
    """The drive read model as commands read it (commands.drive.DriveIndex)."""

    def __init__(self, read: ReadStore) -> None:
        self.read = read

    def kind(self, space: str, path: str) -> Kind | None:
        with self.read.read() as sql:
            if _folder_exists(sql, space, path):
                return "folder"
            sql.execute(
                "SELECT 1 AS x FROM drive_files WHERE space = ? AND path = ?", (space, path)
            )
            return "file" if sql.fetchone() is not None else None

    def file_among(self, space: str, paths: Sequence[str]) -> str | None:
        if not paths:
            return None
        with self.read.read() as sql:
            sql.execute(
                f"SELECT path FROM drive_files WHERE space = ? AND path IN ({_in(paths)})"
                f" ORDER BY {_order(sql, 'path')} LIMIT 1",
                (space, *paths),
            )
            row = sql.fetchone()
        return None if row is None else str(row["path"])

    def files_under(self, space: str, folder: str) -> list[str]:
        where = _below(Where().equal("space", space), folder)
        with self.read.read() as sql:
            sql.execute(
                f"SELECT path FROM drive_files{where.sql} ORDER BY {_order(sql, 'path')}",
                where.params,
            )
            return [str(r["path"]) for r in sql.fetchall()]

    def file(self, space: str, path: str) -> StoredFile | None:
        with self.read.read() as sql:
            row = _file_row(sql, space, path)
        if row is None:
            return None
        return StoredFile(
            space,
            path,
            row["sha256"],
            int(row["size"]),
            row["content_type"],
            int(row["version"]),
        )

    def names(self, space: str, folder: str, limit: int) -> list[tuple[str, Kind]]:
        with self.read.read() as sql:
            sql.execute(
                f"SELECT name, type FROM {ENTRIES} WHERE space = ? AND parent = ?"
                f" ORDER BY rank, {_order(sql, 'name')} LIMIT ?",
                (space, folder, limit),
            )
            rows = sql.fetchall()
        return [(str(r["name"]), "folder" if r["type"] == "folder" else "file") for r in rows]

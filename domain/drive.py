"""Drive: files in a user's private drive or in the shared space of bot packages.

A file is an aggregate per (space, path), its id derived from both, so an upload finds the
file's stream without a lookup. Its events carry metadata only: the content lives in the
blob store (commands.ports.BlobStore) and events name it by its SHA-256.

Spaces: `user:<email>` is a user's private drive; `bots` holds the General Bots packages,
the paths whose first segment ends in `.gbai` (`{bot}.gbai/{bot}.gbdialog/start.bas`).
"""

from __future__ import annotations

from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.common import Gone

BOTS_SPACE = "bots"
PACKAGE_SUFFIX = ".gbai"
_FILES = UUID("5f0c9a4e-7d1b-4c36-9e0a-2b8d6f3a1c57")


def user_space(email: str) -> str:
    return f"user:{email}"


def is_package_path(path: str) -> bool:
    """A path whose first segment ends in `.gbai` is in the shared space of bot packages."""
    return path.split("/", 1)[0].lower().endswith(PACKAGE_SUFFIX)


def file_id(space: str, path: str) -> UUID:
    """The aggregate of the file at `path` in `space` (a normalised path, no trailing `/`)."""
    return uuid5(_FILES, f"{space}\n{path}")


class DriveFile(Aggregate):
    """One path in one space, across its lives: uploads add versions; a delete ends a life,
    and an upload to the same path afterwards starts again at version 1."""

    TOPIC = "gbserver.drive.DriveFile"

    class Created(Aggregate.Created):
        TOPIC = "gbserver.drive.DriveFile.Created"

    class FileCreated(Aggregate.Created):
        """The path's stream begins (its first upload follows in the same save)."""

        TOPIC = "gbserver.drive.FileCreated"

        space: str
        path: str

    class FileUploaded(Aggregate.Event):
        """Content stored at the path: `version` counts uploads since the file was (re)created."""

        TOPIC = "gbserver.drive.FileUploaded"

        space: str
        path: str
        sha256: str
        size: int
        content_type: str
        version: int
        by: str

    class FileDeleted(Aggregate.Event):
        TOPIC = "gbserver.drive.FileDeleted"

        space: str
        path: str
        by: str

    @event(FileCreated)
    def __init__(self, space: str, path: str, id: UUID | None = None) -> None:
        self.space = space
        self.path = path
        self.live = False  # no content yet, or deleted
        self.file_version = 0  # uploads since (re)created
        self.sha256 = ""
        self.size = 0
        self.content_type = ""

    @classmethod
    def open(cls, space: str, path: str) -> DriveFile:
        """A new stream for the path (its id derived from space and path)."""
        return cls(space=space, path=path, id=file_id(space, path))

    def upload(self, sha256: str, size: int, content_type: str, by: str) -> None:
        version = self.file_version + 1 if self.live else 1
        self._uploaded(
            space=self.space,
            path=self.path,
            sha256=sha256,
            size=size,
            content_type=content_type,
            version=version,
            by=by,
        )

    def delete(self, by: str) -> None:
        if not self.live:
            raise Gone(f"file {self.path} was deleted")
        self._deleted(space=self.space, path=self.path, by=by)

    @event(FileUploaded)
    def _uploaded(
        self,
        space: str,
        path: str,
        sha256: str,
        size: int,
        content_type: str,
        version: int,
        by: str,
    ) -> None:
        self.live = True
        self.file_version = version
        self.sha256 = sha256
        self.size = size
        self.content_type = content_type

    @event(FileDeleted)
    def _deleted(self, space: str, path: str, by: str) -> None:
        self.live = False
        self.file_version = 0

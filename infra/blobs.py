"""The blob store (commands.ports.BlobStore): drive files and mail attachments by SHA-256.

Embedded: files under `<GB_DATA_DIR>/blobs/ab/cd/<sha256>`, written to `blobs/.partial/`
first and renamed into place once complete and synced, so a blob is either whole or absent.
Scaled (GB_S3_ENDPOINT): an S3 bucket through boto3 (infra.s3blobs).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from commands.ports import Blob, BlobMissing, BlobStore, BlobTooLarge, BlobWriter
from infra.config import Settings

CHUNK = 256 * 1024  # bytes read at a time
SHA256 = re.compile(r"[0-9a-f]{64}")


def open_blob_store(settings: Settings) -> BlobStore:
    if settings.uses_s3:
        from infra.s3blobs import S3BlobStore  # boto3 is imported only when S3 is used

        return S3BlobStore.from_settings(settings)
    return FileBlobStore(settings.data_dir / "blobs")


def write_whole(writer: BlobWriter, data: bytes) -> Blob:
    """`data` through a writer of either store: committed, or aborted on any failure."""
    try:
        writer.write(data)
        return writer.commit()
    except BaseException:
        writer.abort()
        raise


def check_digest(sha256: str) -> str:
    if not SHA256.fullmatch(sha256):
        raise BlobMissing(f"{sha256!r} is not a SHA-256 digest")
    return sha256


class FileWriter:
    def __init__(self, store: FileBlobStore, limit: int | None) -> None:
        self.store = store
        self.limit = limit
        self.size = 0
        self.digest = hashlib.sha256()
        store.partial.mkdir(parents=True, exist_ok=True)
        self.path = store.partial / uuid.uuid4().hex
        self.file: IO[bytes] | None = open(self.path, "xb")  # noqa: SIM115 - closed by commit/abort

    def write(self, chunk: bytes) -> None:
        if self.file is None:
            raise ValueError("the upload is finished")
        self.size += len(chunk)
        if self.limit is not None and self.size > self.limit:
            self.abort()
            raise BlobTooLarge(self.limit)
        self.digest.update(chunk)
        self.file.write(chunk)

    def commit(self) -> Blob:
        if self.file is None:
            raise ValueError("the upload is finished")
        file, self.file = self.file, None
        try:
            file.flush()
            os.fsync(file.fileno())
        finally:
            file.close()
        blob = Blob(self.digest.hexdigest(), self.size)
        final = self.store.path_of(blob.sha256)
        final.parent.mkdir(parents=True, exist_ok=True)
        # Replaced even when the same content is stored already (it is stored once): the new
        # file's time is what the collector's grace period counts from, so an old orphan that
        # this upload is about to name is not collected under it.
        os.replace(self.path, final)
        os.utime(final)  # now, not when the upload began
        return blob

    def abort(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
        self.path.unlink(missing_ok=True)


class FileBlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.partial = root / ".partial"

    def path_of(self, sha256: str) -> Path:
        check_digest(sha256)
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def writer(self, limit: int | None = None) -> FileWriter:
        return FileWriter(self, limit)

    def put(self, data: bytes) -> Blob:
        return write_whole(self.writer(), data)

    def read(self, sha256: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        try:
            file = open(self.path_of(sha256), "rb")  # noqa: SIM115 - closed by the generator
        except FileNotFoundError:
            raise BlobMissing(sha256) from None
        return _chunks(file, start, end)

    def exists(self, sha256: str) -> bool:
        return self.path_of(sha256).is_file()

    def delete(self, sha256: str) -> None:
        self.path_of(sha256).unlink(missing_ok=True)

    def stored(self) -> Iterator[tuple[str, float]]:
        if not self.root.is_dir():
            return
        for first in sorted(self.root.iterdir()):
            if len(first.name) != 2 or not first.is_dir():
                continue
            for second in sorted(first.iterdir()):
                for blob in sorted(second.iterdir()):
                    if SHA256.fullmatch(blob.name):
                        with contextlib.suppress(FileNotFoundError):
                            yield blob.name, blob.stat().st_mtime

    def clean_partial(self, older_than: float) -> int:
        if not self.partial.is_dir():
            return 0
        removed = 0
        cutoff = time.time() - older_than
        for path in self.partial.iterdir():
            with contextlib.suppress(FileNotFoundError):
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
        return removed


def _chunks(file: IO[bytes], start: int, end: int | None) -> Iterator[bytes]:
    with file:
        file.seek(start)
        left = None if end is None else end - start + 1
        while left is None or left > 0:
            chunk = file.read(CHUNK if left is None else min(CHUNK, left))
            if not chunk:
                return
            if left is not None:
                left -= len(chunk)
            yield chunk

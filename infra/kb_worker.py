"""Knowledge-base ingestion: the worker that reads documents into the index.

One process ingests at a time (the "kb ingestion" lock of infra.locks); the others stand by.
The worker takes the documents the read model (projections.kb) shows as pending or deleting,
oldest change first:

- pending: the file's content (blob store) is extracted (infra.kb_extract), cut into passages
  by its structure (domain.kb_chunks), embedded (infra.embeddings) and replaces the document's
  passages in the index; the outcome is recorded, `indexed` or `error` with what is wrong
  with the file. A file that cannot be read is that file's error, never the worker's.
- deleting: its passages leave the index and the document leaves the read model.

Uploads answer at once: all of this happens here, in the background. After a rebuild of the
read model (every document pending again) and whenever the worker starts, passages of
documents the read model no longer knows are swept out of the index.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import psycopg

from commands.kb import KnowledgeBase
from commands.ports import BlobMissing, BlobStore, KbChunk, KbIndexUnavailable, StoreUnavailable
from domain.kb_chunks import Document, UnreadableDocument, chunk
from infra.config import Settings
from infra.kb_extract import extract
from infra.locks import Lock, LockLost, lock_for
from infra.worker import Worker
from projections.core import ReadStore
from projections.kb import (
    KbDocument,
    document_paths,
    due_documents,
    record_indexed,
    record_removed,
    requeue,
)

if TYPE_CHECKING:
    from infra.areas import AreaContext

log = logging.getLogger("gbserver.kb")

MAX_DOCUMENT_BYTES = 256 * 2**20  # larger files are reported, not read
BATCH = 8  # documents taken from the queue at a time
EMBED_BATCH = 64  # passages embedded between two looks at `stop`
POLL_SECONDS = 0.25  # how often an idle worker looks for work
STANDBY_SECONDS = 2.0  # how often a standby tries to take the lock


def ingestion_lock(settings: Settings) -> Lock:
    return lock_for(settings, "kb ingestion")


def document_chunks(
    path: str, bot: str, collection: str, document: Document
) -> tuple[list[KbChunk], list[str]]:
    """The index's passages of a document and the text each is embedded from (its title and
    headings with it: a passage alone often does not say what it is about)."""
    chunks: list[KbChunk] = []
    texts: list[str] = []
    for passage in chunk(document):
        chunks.append(
            KbChunk(
                id=f"{path}#{passage.position}",
                bot=bot,
                collection=collection,
                path=path,
                title=document.title,
                heading=passage.heading,
                position=passage.position,
                content=passage.content,
            )
        )
        texts.append("\n".join(t for t in (document.title, passage.heading, passage.content) if t))
    return chunks, texts


class Stopped(Exception):
    """The worker was asked to stop in the middle of a document (it is still pending)."""


class KbIngestWorker(Worker):
    name = "kb-ingestion"
    logger = log

    def __init__(self, read: ReadStore, blobs: BlobStore, kb: KnowledgeBase, lock: Lock) -> None:
        super().__init__()
        self.read = read
        self.blobs = blobs
        self.kb = kb
        self.active = False
        self._lock = lock
        self._swept = False

    def _is_outage(self, exc: Exception) -> bool:
        return isinstance(
            exc, KbIndexUnavailable | StoreUnavailable | psycopg.OperationalError | OSError
        )

    def _close(self) -> None:
        self._lock.release()
        self.active = False

    def _step(self) -> None:
        self.ready.set()
        if not self._lock.acquire():
            self.active = False
            self._stop.wait(STANDBY_SECONDS)
            return
        if not self.active:
            self.active = True
            self._swept = False
            log.info("knowledge-base ingestion active")
        try:
            while not self._stop.is_set():
                self._lock.check()
                due = due_documents(self.read, BATCH)
                for doc in due:
                    if self._stop.is_set():
                        return
                    self._lock.check()
                    if doc.state == "deleting":
                        self.kb.index().delete(doc.path)
                        record_removed(self.read, doc)
                    else:
                        self._ingest(doc)
                if not due and not self._swept:
                    self._sweep()
                    self._swept = True
                elif due:
                    self._swept = False
                self._recovered()
                if not due:
                    self._stop.wait(POLL_SECONDS)
        except Stopped:
            return
        except LockLost as e:
            log.warning("knowledge-base ingestion lost its lock (%s); standing by", e)
            self.active = False
            self._lock.release()

    def _sweep(self) -> None:
        """The index and the read model agree: passages of documents the read model does not
        know leave the index, and documents shown indexed that the index lacks (it was
        deleted, or another one configured) are read again."""
        index = self.kb.index()
        known = document_paths(self.read)
        held = index.paths()
        stray = held - set(known)
        for path in sorted(stray):
            index.delete(path)
        if stray:
            log.info("swept %d stray documents out of the knowledge base", len(stray))
        missing = sorted(p for p, state in known.items() if state == "indexed" and p not in held)
        if missing:
            requeue(self.read, missing)
            log.info("%d documents are missing from the index: reading them again", len(missing))

    def _ingest(self, doc: KbDocument) -> None:
        started = time.monotonic()
        name = doc.path.rpartition("/")[2]
        if doc.size > MAX_DOCUMENT_BYTES:
            limit = MAX_DOCUMENT_BYTES // 2**20
            self._outcome(doc, 0, f"the file is larger than the knowledge base reads ({limit} MiB)")
            return
        try:
            data = b"".join(self.blobs.read(doc.sha256))
            document = extract(data, name, doc.content_type)
            chunks, texts = document_chunks(doc.path, doc.bot, doc.collection, document)
            if not chunks:
                raise UnreadableDocument("no text found")
        except BlobMissing:
            self._outcome(doc, 0, "the file's content is missing from the blob store")
            return
        except UnreadableDocument as e:
            self._outcome(doc, 0, str(e) or "the file cannot be read")
            return
        vectors = self._embed(texts)
        self.kb.index().replace(doc.path, chunks, vectors)
        self._outcome(doc, len(chunks), None)
        log.info(
            "indexed %s: %d passages in %.2f s", doc.path, len(chunks), time.monotonic() - started
        )

    def _embed(self, texts: Sequence[str]) -> Any:
        import numpy as np

        parts = []
        for start in range(0, len(texts), EMBED_BATCH):
            if self._stop.is_set():
                raise Stopped
            self._lock.check()
            parts.append(self.kb.embedder.embed(texts[start : start + EMBED_BATCH]))
        return np.concatenate(parts)

    def _outcome(self, doc: KbDocument, chunks: int, error: str | None) -> None:
        if error is not None:
            log.warning("cannot index %s: %s", doc.path, error)
        record_indexed(self.read, doc, chunks, error)


def kb_workers(ctx: AreaContext) -> Sequence[Worker]:
    return (KbIngestWorker(ctx.read, ctx.blobs, ctx.kb, ingestion_lock(ctx.settings)),)

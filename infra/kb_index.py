"""The knowledge base's index and model, as one process uses them.

The index is an SQLite file searched in memory under `GB_DATA_DIR/kb` (embedded), or
an OpenSearch node (`GB_OPENSEARCH_URL`, scaled). Both open on first use and the model loads
on its first embedding, so a server whose bots use no knowledge base pays for neither.
"""

from __future__ import annotations

import threading

from commands.kb import KnowledgeBase
from commands.ports import KbIndex
from infra.config import Settings
from infra.embeddings import MiniLmEmbedder
from projections.core import ReadStore
from projections.kb import KbReadModel


def open_kb_index(settings: Settings) -> KbIndex:
    if settings.uses_opensearch:
        from infra.kb_opensearch import OpenSearchKbIndex

        index: KbIndex = OpenSearchKbIndex(settings.opensearch_url, settings.opensearch_index)
        return index
    from infra.kb_sqlite import SqliteKbIndex

    return SqliteKbIndex(settings.data_dir / "kb" / "index.sqlite3")


class LazyIndex:
    """The index, opened by the first caller; `close` closes it if it was opened."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._index: KbIndex | None = None
        self._lock = threading.Lock()

    def __call__(self) -> KbIndex:
        index = self._index
        if index is None:
            with self._lock:
                if self._index is None:
                    self._index = open_kb_index(self.settings)
                index = self._index
        return index

    def check(self) -> None:
        """Health: OpenSearch is probed (raising KbIndexUnavailable); an index on this
        machine is probed once opened (a health check does not open it)."""
        if self.settings.uses_opensearch or self._index is not None:
            self().check()

    def close(self) -> None:
        with self._lock:
            if self._index is not None:
                self._index.close()
                self._index = None


def knowledge_base(settings: Settings, read: ReadStore) -> tuple[KnowledgeBase, LazyIndex]:
    index = LazyIndex(settings)
    return KnowledgeBase(index=index, embedder=MiniLmEmbedder(), documents=KbReadModel(read)), index

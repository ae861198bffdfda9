"""The scaled knowledge-base index (commands.ports.KbIndex): one OpenSearch index.

Each passage is one document: its text fields (content, title, heading) analysed for BM25,
keyword fields for the scope and bookkeeping (id, bot, collection, path, batch), its position,
and its embedding as a `knn_vector` (HNSW graph of the `lucene` engine, cosine similarity;
the k-NN plugin's native engines are not used: the nodes this runs on may carry no faiss or
nmslib libraries, and a faiss index there kills the node).

The index is created with its mapping by the first call that needs it (check() does not:
health does not create anything). Its text analyser is close to the embedded index's words
(domain.kb_terms): words of letters and digits, lower-cased, accents folded, stemmed (Porter
here, its successor Snowball English there), no stop words ("café" finds "cafe", "running"
finds "run").

Documents. A document's id (`_id`) is the passage id when it fits OpenSearch's 512 bytes,
else a digest of it; the passage id itself is the `id` field, which is what searches return.
`replace` indexes the new passages (one bulk request per BULK_CHUNKS) under a new `batch`
token, deletes the path's passages of any other batch (delete-by-query), then refreshes the
index once. A search right after `replace` or `delete` sees the change; one during it sees
the old version (or, should a periodic refresh come between, some passages of both), never
the document missing. The vectors are not kept in `_source` (they are in the vector index),
so fetching passages stays cheap.

Scores. Lexical hits carry OpenSearch's BM25 `_score` (a multi_match over content, title and
heading); semantic hits the cosine similarity, which the lucene engine's `cosinesimil` score
((1 + cos) / 2) is turned back into. A user's query reaches OpenSearch only as the text of a
match query (never query_string syntax), reduced to its first MAX_QUERY_TERMS distinct words.

Errors. A node that cannot be reached or answers 5xx, 408 or 429 raises KbIndexUnavailable (the
API answers 503, the ingestion worker retries); anything else is a bug and raised as it is.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import threading
import unicodedata
import uuid
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy
from opensearchpy import OpenSearch
from opensearchpy.exceptions import ConnectionError as OpenSearchConnectionError
from opensearchpy.exceptions import NotFoundError, RequestError, TransportError

from commands.ports import EMBEDDING_DIMENSION, KbChunk, KbHit, KbIndexUnavailable, KbScope
from infra.embeddings import passage_matrix

if TYPE_CHECKING:
    from numpy.typing import NDArray

    Vectors = NDArray[numpy.float32]

TIMEOUT = 10.0  # seconds, each request
WRITE_TIMEOUT = 30.0  # seconds, a bulk or delete-by-query request (a large document's)
MAX_RETRIES = 2  # of a request whose connection failed (every request here is idempotent)
POOL_SIZE = 16  # connections kept to the node (concurrent requests of this process)
BULK_CHUNKS = 250  # passages per bulk request (about 2.5 MB with their vectors)
MGET_IDS = 1000  # ids per multi-get
PATHS_PAGE = 1000  # paths per composite-aggregation page
MAX_QUERY_TERMS = 64  # distinct words of a lexical query; the rest are ignored
MAX_TERM_CHARS = 100
MAX_ID_BYTES = 512  # OpenSearch's limit on a document's _id
# multi_match boosts: a word of the title or the headings says more about a passage than one
# word of its text. `combined_fields` scores the fields as one (BM25F), as the embedded
# index weighs a word's counts: Recall@10 0.747 in bench/kb.py, against 0.688 for
# `best_fields` (the best field's score alone) and 0.599 for `most_fields` (their sum).
LEXICAL_FIELDS = ["content^1", "title^2", "heading^1.5"]
EF_SEARCH_MIN = 256  # HNSW candidates a semantic search explores, at least (more: better recall)
HNSW_M = 16
HNSW_EF_CONSTRUCTION = 128

# The embedded index's words end at anything but letters and digits; so do these
# words (the query text is only ever passed as a match query's text: this bounds its size).
_WORD = re.compile(r"[^\W_]+")
_SOURCE_FIELDS = ["id", "bot", "collection", "path", "title", "heading", "position", "content"]

_SETTINGS: dict[str, Any] = {
    "index": {"knn": True, "number_of_shards": 1, "number_of_replicas": 0},
    "analysis": {
        "filter": {
            "kb_possessive": {"type": "stemmer", "language": "possessive_english"},
        },
        "analyzer": {
            "kb_text": {
                "type": "custom",
                "tokenizer": "standard",
                "filter": ["kb_possessive", "lowercase", "asciifolding", "porter_stem"],
            },
        },
    },
}

_MAPPINGS: dict[str, Any] = {
    "dynamic": "strict",
    "_source": {"excludes": ["vector"]},
    "properties": {
        "id": {"type": "keyword"},
        "bot": {"type": "keyword"},
        "collection": {"type": "keyword"},
        "path": {"type": "keyword"},
        "batch": {"type": "keyword"},
        "title": {"type": "text", "analyzer": "kb_text"},
        "heading": {"type": "text", "analyzer": "kb_text"},
        "content": {"type": "text", "analyzer": "kb_text"},
        "position": {"type": "integer"},
        "vector": {
            "type": "knn_vector",
            "dimension": EMBEDDING_DIMENSION,
            "method": {
                "name": "hnsw",
                "space_type": "cosinesimil",
                "engine": "lucene",
                "parameters": {"m": HNSW_M, "ef_construction": HNSW_EF_CONSTRUCTION},
            },
        },
    },
}


def query_text(text: str) -> str:
    """The words of the user's text (distinct, at most MAX_QUERY_TERMS), space separated: ""
    when there is none. Only ever a match query's text, where no character is an operator."""
    words: dict[str, None] = {}
    for word in _WORD.findall(unicodedata.normalize("NFKC", text)):
        words.setdefault(word.casefold()[:MAX_TERM_CHARS], None)
        if len(words) == MAX_QUERY_TERMS:
            break
    return " ".join(words)


def document_id(chunk_id: str) -> str:
    """The OpenSearch `_id` of a passage: its id, or a digest of an id too long for one."""
    if len(chunk_id.encode()) <= MAX_ID_BYTES and not chunk_id.startswith("sha256:"):
        return chunk_id
    return "sha256:" + hashlib.sha256(chunk_id.encode()).hexdigest()


def _scope_filters(scope: KbScope) -> list[dict[str, Any]]:
    filters: list[dict[str, Any]] = []
    if scope.bot is not None:
        filters.append({"term": {"bot": scope.bot}})
    if scope.collections is not None:
        filters.append({"terms": {"collection": sorted(scope.collections)}})
    return filters


def _unavailable(error: TransportError) -> bool:
    """Whether the error says the node is down or overloaded (not that the request was wrong)."""
    if isinstance(error, OpenSearchConnectionError):
        return True
    status = error.status_code
    return isinstance(status, int) and (status >= 500 or status in (408, 429))


class OpenSearchKbIndex:
    """commands.ports.KbIndex on the OpenSearch node at `url` (e.g. http://127.0.0.1:9200, user
    and password in the URL if the node wants them), in the index `index`. Thread-safe: one
    client, whose connection pool the threads share."""

    def __init__(self, url: str, index: str) -> None:
        self.url = url
        self.index = index
        self._client = OpenSearch(
            hosts=[url],
            timeout=TIMEOUT,
            max_retries=MAX_RETRIES,
            retry_on_timeout=False,
            http_compress=False,
            pool_maxsize=POOL_SIZE,
        )
        self._ready = False  # the index is known to exist
        self._ready_lock = threading.Lock()
        self._closed = False

    # --- plumbing -------------------------------------------------------------------------

    @contextlib.contextmanager
    def _calling(self, what: str) -> Iterator[None]:
        """Turns the node's unavailability into KbIndexUnavailable."""
        if self._closed:
            raise KbIndexUnavailable("the knowledge base index is closed")
        try:
            yield
        except TransportError as e:
            if _unavailable(e):
                raise KbIndexUnavailable(
                    f"OpenSearch {self.url} ({self.index}): {what}: {e}"
                ) from e
            raise

    def _ensure(self) -> None:
        """Creates the index with its mapping when it does not exist yet."""
        if self._ready:
            return
        with self._ready_lock:
            if self._ready:
                return
            with self._calling("creating the index"):
                if not self._client.indices.exists(index=self.index):
                    try:
                        self._client.indices.create(
                            index=self.index,
                            body={"settings": _SETTINGS, "mappings": _MAPPINGS},
                            params={"wait_for_active_shards": "1"},
                        )
                    except RequestError as e:
                        # Another process may have made it meanwhile: that is fine.
                        if e.error != "resource_already_exists_exception":
                            raise
                # Made here or by another process just now: its (one) shard may not be started
                # yet (a new index's unassigned primary counts as yellow, not red).
                health = self._client.cluster.health(
                    index=self.index,
                    # (request_timeout: without it the client takes `timeout` for its own)
                    params={
                        "wait_for_active_shards": "1",
                        "timeout": "5s",
                        "request_timeout": TIMEOUT,
                    },
                )  # (answered 408 when it times out)
            if health.get("timed_out"):
                raise KbIndexUnavailable(
                    f"OpenSearch {self.url}: the index {self.index} has no active shard"
                )
            self._ready = True

    def _search(self, body: dict[str, Any], what: str) -> list[dict[str, Any]]:
        """The hits of a search of the index (none when it does not exist yet)."""
        self._ensure()
        with self._calling(what):
            try:
                response = self._client.search(index=self.index, body=body)
            except NotFoundError:
                self._ready = False  # deleted behind our back: made again by the next call
                return []
        hits: list[dict[str, Any]] = response["hits"]["hits"]
        return hits

    # --- writes ---------------------------------------------------------------------------

    def replace(self, path: str, chunks: Sequence[KbChunk], vectors: Vectors) -> None:
        matrix = passage_matrix(path, chunks, vectors)
        norms = numpy.linalg.norm(matrix, axis=1)
        batch = uuid.uuid4().hex
        self._ensure()
        for start in range(0, len(chunks), BULK_CHUNKS):
            end = min(start + BULK_CHUNKS, len(chunks))
            lines: list[dict[str, Any]] = []
            for chunk, vector, norm in zip(
                chunks[start:end], matrix[start:end], norms[start:end], strict=True
            ):
                lines.append({"index": {"_index": self.index, "_id": document_id(chunk.id)}})
                doc: dict[str, Any] = {
                    "id": chunk.id,
                    "bot": chunk.bot,
                    "collection": chunk.collection,
                    "path": chunk.path,
                    "batch": batch,
                    "title": chunk.title,
                    "heading": chunk.heading,
                    "position": chunk.position,
                    "content": chunk.content,
                }
                # A zero vector has no direction (cosine is undefined and OpenSearch refuses
                # it): such a passage is found by lexical search only.
                if norm > 0:
                    doc["vector"] = (vector / norm).tolist()
                lines.append(doc)
            with self._calling(f"indexing {path}"):
                response = self._client.bulk(
                    body=lines,
                    params={"request_timeout": WRITE_TIMEOUT},
                )
            if response.get("errors"):
                self._bulk_failed(path, response)
        self._delete_where(path, batch, f"replacing {path}")

    def delete(self, path: str) -> None:
        self._ensure()
        self._delete_where(path, None, f"deleting {path}")

    def _delete_where(self, path: str, keep_batch: str | None, what: str) -> None:
        """Deletes the path's passages but those of `keep_batch`, then refreshes the index."""
        query: dict[str, Any] = {"bool": {"filter": [{"term": {"path": path}}]}}
        if keep_batch is not None:
            query["bool"]["must_not"] = [{"term": {"batch": keep_batch}}]
        with self._calling(what):
            self._client.delete_by_query(
                index=self.index,
                body={"query": query},
                params={
                    # A passage just re-indexed by this replace is newer than the version the
                    # delete's search sees (the last refreshed one): a version conflict, and
                    # so kept (it is of keep_batch anyway).
                    "conflicts": "proceed",
                    "request_timeout": WRITE_TIMEOUT,
                },
            )
            # One refresh makes the new passages and the deletions visible at once (a
            # delete-by-query's own `refresh` skips it when it deleted nothing).
            self._client.indices.refresh(
                index=self.index, params={"request_timeout": WRITE_TIMEOUT}
            )

    def _bulk_failed(self, path: str, response: dict[str, Any]) -> None:
        failed = [
            result
            for item in response.get("items", [])
            for result in item.values()
            if result.get("status", 200) >= 300
        ]
        if not failed:
            return
        first = failed[0]
        status = int(first.get("status", 0))
        message = (
            f"OpenSearch {self.url} ({self.index}): indexing {path}: {len(failed)} passages"
            f" failed, the first with {status} {first.get('error')}"
        )
        if status >= 500 or status in (408, 429):
            raise KbIndexUnavailable(message)
        raise RuntimeError(message)

    # --- searches -------------------------------------------------------------------------

    def lexical(self, query: str, scope: KbScope, k: int) -> list[KbHit]:
        text = query_text(query)
        if not text or k <= 0 or scope.collections == frozenset():
            return []
        body = {
            "size": k,
            "track_total_hits": False,
            "_source": ["id"],
            "query": {
                "bool": {
                    "must": {
                        "combined_fields": {
                            "query": text,
                            "fields": LEXICAL_FIELDS,
                            "operator": "or",
                        }
                    },
                    "filter": _scope_filters(scope),
                }
            },
        }
        hits = self._search(body, "lexical search")
        return [KbHit(hit["_source"]["id"], float(hit["_score"])) for hit in hits]

    def semantic(self, vector: Vectors, scope: KbScope, k: int) -> list[KbHit]:
        query = numpy.asarray(vector, dtype=numpy.float32).reshape(-1)
        if query.shape != (EMBEDDING_DIMENSION,):
            raise ValueError(f"a query vector has {EMBEDDING_DIMENSION} numbers, not {query.size}")
        if k <= 0 or scope.collections == frozenset():
            return []
        norm = float(numpy.linalg.norm(query))
        if not numpy.isfinite(norm) or norm == 0:
            return []  # no direction: nothing is similar to it
        knn: dict[str, Any] = {
            "vector": (query / norm).tolist(),
            "k": k,
            "method_parameters": {"ef_search": max(k, EF_SEARCH_MIN)},
        }
        filters = _scope_filters(scope)
        if filters:
            knn["filter"] = {"bool": {"filter": filters}}
        body = {
            "size": k,
            "track_total_hits": False,
            "_source": ["id"],
            "query": {"knn": {"vector": knn}},
        }
        hits = self._search(body, "semantic search")
        # The lucene engine scores cosinesimil as (1 + cos) / 2.
        return [
            KbHit(hit["_source"]["id"], min(1.0, max(-1.0, 2.0 * float(hit["_score"]) - 1.0)))
            for hit in hits
        ]

    def similarity(self, vector: Vectors, ids: Sequence[str]) -> dict[str, float]:
        query = numpy.asarray(vector, dtype=numpy.float32).reshape(-1)
        if query.shape != (EMBEDDING_DIMENSION,):
            raise ValueError(f"a query vector has {EMBEDDING_DIMENSION} numbers, not {query.size}")
        wanted = list(dict.fromkeys(ids))
        norm = float(numpy.linalg.norm(query))
        if not wanted or not numpy.isfinite(norm) or norm == 0:
            return {}
        found: dict[str, float] = {}
        for start in range(0, len(wanted), MGET_IDS):
            batch = wanted[start : start + MGET_IDS]
            body = {
                "size": len(batch),
                "track_total_hits": False,
                "_source": ["id"],
                "query": {
                    "script_score": {  # exact: the k-NN plugin's scoring script, these only
                        "query": {"bool": {"filter": [{"terms": {"id": batch}}]}},
                        "script": {
                            "source": "knn_score",
                            "lang": "knn",
                            "params": {
                                "field": "vector",
                                "query_value": (query / norm).tolist(),
                                "space_type": "cosinesimil",
                            },
                        },
                    }
                },
            }
            # The scoring script scores cosinesimil as the knn query does: (1 + cos) / 2.
            for hit in self._search(body, "passage similarity"):
                cosine = 2.0 * float(hit["_score"]) - 1.0
                found[hit["_source"]["id"]] = min(1.0, max(-1.0, cosine))
        return found

    # --- reads ----------------------------------------------------------------------------

    def chunks(self, ids: Sequence[str]) -> dict[str, KbChunk]:
        wanted = list(dict.fromkeys(ids))
        found: dict[str, KbChunk] = {}
        if not wanted:
            return found
        self._ensure()
        for start in range(0, len(wanted), MGET_IDS):
            batch = wanted[start : start + MGET_IDS]
            with self._calling("reading passages"):
                try:
                    response = self._client.mget(
                        index=self.index,
                        body={"ids": [document_id(id_) for id_ in batch]},
                        params={"_source_includes": ",".join(_SOURCE_FIELDS)},
                    )
                except NotFoundError:
                    self._ready = False
                    return found
            for doc in response["docs"]:
                if not doc.get("found"):
                    continue
                source = doc["_source"]
                chunk = KbChunk(
                    id=source["id"],
                    bot=source["bot"],
                    collection=source["collection"],
                    path=source["path"],
                    title=source["title"],
                    heading=source["heading"],
                    position=int(source["position"]),
                    content=source["content"],
                )
                found[chunk.id] = chunk
        return found

    def paths(self) -> set[str]:
        self._ensure()
        found: set[str] = set()
        after: dict[str, Any] | None = None
        while True:
            composite: dict[str, Any] = {
                "size": PATHS_PAGE,
                "sources": [{"path": {"terms": {"field": "path"}}}],
            }
            if after is not None:
                composite["after"] = after
            body = {
                "size": 0,
                "track_total_hits": False,
                "aggs": {"paths": {"composite": composite}},
            }
            with self._calling("listing paths"):
                try:
                    response = self._client.search(index=self.index, body=body)
                except NotFoundError:
                    self._ready = False
                    return found
            aggregation = response["aggregations"]["paths"]
            buckets = aggregation["buckets"]
            found.update(bucket["key"]["path"] for bucket in buckets)
            after = aggregation.get("after_key")
            if not buckets or after is None:
                return found

    def count(self) -> int:
        self._ensure()
        with self._calling("counting passages"):
            try:
                response = self._client.count(index=self.index)
            except NotFoundError:
                self._ready = False
                return 0
        return int(response["count"])

    def check(self) -> None:
        """The node answers and its cluster is not red (the index itself is made on first use)."""
        with self._calling("health"):
            health = self._client.cluster.health(params={"request_timeout": TIMEOUT})
        if health.get("status") == "red":
            raise KbIndexUnavailable(f"OpenSearch {self.url}: the cluster's health is red")

    def drop(self) -> None:
        """Deletes the whole index (a missing one is no error): the next write makes it anew."""
        with self._ready_lock, self._calling("deleting the index"):
            self._client.indices.delete(index=self.index, params={"ignore_unavailable": "true"})
            self._ready = False

    def close(self) -> None:
        self._closed = True
        self._client.close()

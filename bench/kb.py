"""Knowledge-base benchmark: retrieval quality over real documentation (lexical, semantic and
hybrid search, on both profiles), search latency at 100,000 passages, and the ingestion rate.

Run from the repository root with the project's venv:

    .venv/bin/python -m bench.kb                   # the whole evaluation (see timings below)
    .venv/bin/python -m bench.kb --quick           # smoke run: fewer pages, questions, passages
    .venv/bin/python -m bench.kb --opensearch http://127.0.0.1:9200   # also the scaled profile
    GB_BENCH_OPENSEARCH=http://127.0.0.1:9200 .venv/bin/python -m bench kb

The corpus: documentation pages no one here wrote, from Debian's packages, fetched into
bench/.cache by `apt-get download` (`apt-get update` first only when the download fails) and
unpacked with `dpkg-deb -x`; never committed (bench/.cache is ignored).

- python3.11-doc (the Python 3.11 documentation, HTML): every page of library/, tutorial/,
  howto/, faq/, reference/, using/, extending/, c-api/, distutils/, install/, installing/,
  distributing/, and glossary.html and bugs.html: 470 pages. Left out: the generated indexes
  (genindex*, py-modindex, search, contents, the top index.html), the what's-new pages and
  the changelog (release notes that mention every module by name: noise for these questions),
  includes/ (a fragment) and the about/copyright/license/download pages.
- python-flask-doc (the Flask 2.2 documentation, HTML), every page but 404, genindex,
  py-modindex, search and changes (the changelog): 72 pages, under `flask/` in the labels.
  Python's documentation alone has fewer than 500 pages once its indexes and release notes
  are left out; Flask's adds real user-facing pages (patterns, deployment, tutorial) that are
  written like a knowledge base is.

The questions: bench/kb_questions.json, each `{"q": ..., "page": ..., "also": [...]}` with
`page` relative to its package's HTML root (`flask/` for Flask's), written after reading the
page and checked against its text, worded as a user would ask rather than with the page's own
terms; `also` lists other pages that answer it as well (a hit on any of them counts).

What it does:

1. Ingests the corpus as the server's ingestion worker does (infra.kb_worker): the file's
   bytes -> `infra.kb_extract.extract(data, name, "text/html")` -> `infra.kb_worker.
   document_chunks(path, bot, collection, document)` (domain.kb_chunks.chunk, KbChunk and the
   text each passage is embedded from) -> `MiniLmEmbedder.embed` -> `KbIndex.replace(path,
   chunks, vectors)`; each page is the drive file `bench.gbai/bench.gbkb/docs/<page>`. The
   embeddings are cached in bench/.cache/embeddings/<model>/ (vectors.npy + keys.json, keyed
   by the sha256 of the embedded text), so a second run embeds nothing.
2. Asks every question in each mode (lexical, semantic, hybrid) through `commands.kb.search(
   index, embedder, q, KbScope(bot="bench"), limit=10, mode=...)`, on SqliteKbIndex always
   and on OpenSearchKbIndex (a fresh index, deleted afterwards) when `--opensearch URL` (or
   GB_BENCH_OPENSEARCH) is given. A hit is a result whose chunk.path is the labelled page (or
   one of `also`). Recall@10: share of questions with a hit in the top 10; nDCG@10 with binary
   relevance of the first hit, 1 / log2(1 + rank); MRR@10: mean of 1 / rank.
3. Latency on the embedded profile: the SQLite index is filled up to `--latency-chunks`
   (100,000) passages with the corpus' real passages and vectors, repeated under distinct
   paths (`docs/copy-N/<page>`, said so in the output), then `--latency-queries` (200) hybrid
   searches run through `commands.kb.search`, query embedding included: p50/p95/p99 ms.
4. Ingestion rate: `--ingest-pages` (50) pages, uncached: extract + chunk + embed + replace,
   timed by stage, as documents/s and passages/s (into SQLite, and into OpenSearch when given:
   the same extraction and embeddings, each profile's own replace).
5. `--sweep`: hybrid quality on SQLite for several semantic weights (commands.kb.
   SEMANTIC_WEIGHT, set for the sweep only), to tune the fusion.

It prints the tables and writes JSON (machine, params, corpus, results, per-question ranks)
to bench/results/kb.json (kb-quick.json with --quick; `--json PATH` elsewhere).

Timings on this 2-core machine: the corpus is 11,793 passages of 236 tokens on average (41%
longer than the model's 256 and cut there), embedded at about 16 passages/s on an idle machine,
so the first run spends 12 minutes or more embedding (35 minutes with other work running);
later runs take the embeddings from the cache, and the whole run (with --opensearch and
--sweep) takes about 10 minutes, most of it the 100,000-passage fill, the OpenSearch writes and
the uncached ingestion sample. `--quick` (100 pages, 40 questions, 10,000 passages for
latency, 10 pages for ingestion) takes about a minute once its pages are cached.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import mimetypes
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from bench.common import describe_json, make_console, print_machine
from bench.run import ROOT, at_least, machine, percentile
from commands.ports import EMBEDDING_DIMENSION, KbIndexUnavailable

if TYPE_CHECKING:
    import numpy
    from numpy.typing import NDArray

    from commands.ports import KbChunk, KbIndex
    from infra.embeddings import MiniLmEmbedder

CACHE = ROOT / "bench" / ".cache"
QUESTIONS = ROOT / "bench" / "kb_questions.json"
RESULTS = ROOT / "bench" / "results"
BOT = "bench"
COLLECTION = "docs"
PATH_PREFIX = f"{BOT}.gbai/{BOT}.gbkb/{COLLECTION}/"
OPENSEARCH_ENV = "GB_BENCH_OPENSEARCH"
MODES = ("lexical", "semantic", "hybrid")
LIMIT = 10
EMBED_SAVE_EVERY = 2000  # newly embedded passages between two saves of the cache
SWEEP_WEIGHTS = (0.3, 0.4, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.9)
QUICK = {"pages": 100, "questions": 40, "latency_chunks": 10_000, "latency_queries": 50,
         "ingest_pages": 10}  # fmt: skip


# --- the corpus ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """A Debian package of HTML documentation and the pages of it the corpus takes."""

    package: str
    html_root: str  # inside the unpacked package
    label_prefix: str  # before a page's path in the labels ("" for Python's)
    sections: tuple[str, ...]  # directories whose every page is taken ("" : the root's pages)
    pages: tuple[str, ...] = ()  # single pages at the root
    excluded: tuple[str, ...] = ()  # pages left out of `sections`

    def selected(self, relative: str) -> bool:
        if relative in self.excluded:
            return False
        if relative in self.pages:
            return True
        top = relative.partition("/")[0] if "/" in relative else ""
        return top in self.sections


SOURCES = (
    Source(
        package="python3.11-doc",
        html_root="usr/share/doc/python3.11/html",
        label_prefix="",
        sections=(
            "library",
            "tutorial",
            "howto",
            "faq",
            "reference",
            "using",
            "extending",
            "c-api",
            "distutils",
            "install",
            "installing",
            "distributing",
        ),
        pages=("glossary.html", "bugs.html"),
    ),
    Source(
        package="python-flask-doc",
        html_root="usr/share/doc/python-flask-doc/html",
        label_prefix="flask/",
        sections=("", "deploying", "patterns", "tutorial"),
        excluded=("404.html", "genindex.html", "py-modindex.html", "search.html", "changes.html"),
    ),
)


@dataclass(frozen=True)
class Page:
    label: str  # e.g. library/os.path.html, flask/quickstart.html
    file: Path
    source: str  # the package

    @property
    def path(self) -> str:
        """The drive path the server would index it under."""
        return PATH_PREFIX + self.label


def _run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)


def fetch(source: Source, console: Console) -> Path:
    """The unpacked HTML root of the source's package, downloaded and unpacked if absent."""
    unpacked = CACHE / "corpus" / source.package
    root = unpacked / source.html_root
    if root.is_dir():
        return root
    debs = CACHE / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    found = sorted(debs.glob(f"{source.package}_*.deb"))
    if not found:
        if shutil.which("apt-get") is None:
            raise RuntimeError(f"no {source.package} in {debs} and no apt-get to download it")
        console.print(f"downloading {source.package} (apt-get download) ...", markup=False)
        done = _run(["apt-get", "download", source.package], debs)
        if done.returncode != 0:
            console.print("apt-get download failed; apt-get update, then again", markup=False)
            _run(["apt-get", "update"], debs)
            done = _run(["apt-get", "download", source.package], debs)
        found = sorted(debs.glob(f"{source.package}_*.deb"))
        if done.returncode != 0 or not found:
            raise RuntimeError(f"apt-get download {source.package} failed: {done.stderr.strip()}")
    if shutil.which("dpkg-deb") is None:
        raise RuntimeError("dpkg-deb is needed to unpack the documentation packages")
    shutil.rmtree(unpacked, ignore_errors=True)
    unpacked.parent.mkdir(parents=True, exist_ok=True)  # dpkg-deb -x makes the last level only
    done = _run(["dpkg-deb", "-x", str(found[-1]), str(unpacked)], CACHE)
    if done.returncode != 0 or not root.is_dir():
        raise RuntimeError(f"dpkg-deb -x {found[-1].name} failed: {done.stderr.strip()}")
    return root


def corpus(console: Console) -> list[Page]:
    """Every page of the corpus, in a fixed order."""
    pages: list[Page] = []
    for source in SOURCES:
        root = fetch(source, console)
        for file in sorted(root.rglob("*.html")):
            relative = file.relative_to(root).as_posix()
            if source.selected(relative):
                pages.append(Page(source.label_prefix + relative, file, source.package))
    return pages


# --- the questions -------------------------------------------------------------------------


@dataclass(frozen=True)
class Question:
    q: str
    page: str
    also: tuple[str, ...] = ()

    @property
    def labels(self) -> tuple[str, ...]:
        return (self.page, *self.also)


def load_questions() -> list[Question]:
    raw = json.loads(QUESTIONS.read_text())
    return [Question(d["q"], d["page"], tuple(d.get("also", ()))) for d in raw]


def spread(items: Sequence[Any], n: int) -> list[Any]:
    """n items taken evenly over the sequence (all of them when n >= its length)."""
    if n >= len(items):
        return list(items)
    return [items[i * len(items) // n] for i in range(n)]


def select(
    pages: list[Page], questions: list[Question], max_pages: int | None, max_questions: int | None
) -> tuple[list[Page], list[Question]]:
    """The pages and questions of this run: with limits, the questions taken evenly over the
    file, their pages, and other pages taken evenly over the corpus up to `max_pages`."""
    by_label = {p.label: p for p in pages}
    missing = sorted({label for q in questions for label in q.labels} - by_label.keys())
    if missing:
        raise RuntimeError(f"questions name pages that are not in the corpus: {missing}")
    if max_questions is not None:
        questions = spread(questions, max_questions)
    if max_pages is None:
        return pages, questions
    needed = list(dict.fromkeys(label for q in questions for label in q.labels))
    others = [p.label for p in pages if p.label not in set(needed)]
    chosen = set(needed) | set(spread(others, max(0, max_pages - len(needed))))
    return [p for p in pages if p.label in chosen], questions


# --- ingestion as the server does it -------------------------------------------------------


@dataclass
class Prepared:
    """A page extracted and cut into the index's passages."""

    page: Page
    chunks: list[KbChunk]
    texts: list[str]  # what each passage is embedded from


@dataclass
class Ingested:
    documents: list[Prepared]
    skipped: dict[str, str]  # page -> why the server would report it unreadable
    seconds_extract: float
    seconds_chunk: float


def shown(path: Path) -> str:
    """The path relative to the repository when it is inside it."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def content_type(name: str) -> str:
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


def prepare(pages: Sequence[Page]) -> Ingested:
    """extract -> chunk, as infra.kb_worker's `_ingest` does (without the blob store)."""
    from domain.kb_chunks import UnreadableDocument
    from infra.kb_extract import extract
    from infra.kb_worker import document_chunks

    documents: list[Prepared] = []
    skipped: dict[str, str] = {}
    extracting = chunking = 0.0
    for page in pages:
        name = page.label.rpartition("/")[2]
        data = page.file.read_bytes()
        try:
            began = time.perf_counter()
            document = extract(data, name, content_type(name))
            extracted = time.perf_counter()
            chunks, texts = document_chunks(page.path, BOT, COLLECTION, document)
            chunking += time.perf_counter() - extracted
            extracting += extracted - began
            if not chunks:
                raise UnreadableDocument("no text found")
        except UnreadableDocument as e:
            skipped[page.label] = str(e) or "the file cannot be read"
            continue
        documents.append(Prepared(page, chunks, texts))
    return Ingested(documents, skipped, extracting, chunking)


class EmbeddingCache:
    """Vectors of embedded texts, keyed by the sha256 of the text, for one model file: the
    rows of vectors.npy, in the order of keys.json. Append-only; each save merges into what is
    on disk under a file lock, so runs in parallel lose nothing."""

    def __init__(self, directory: Path) -> None:
        import numpy as np

        self.directory = directory
        self.vectors_file = directory / "vectors.npy"
        self.keys_file = directory / "keys.json"
        self.keys: list[str] = []
        self.row: dict[str, int] = {}
        self.matrix = np.zeros((0, EMBEDDING_DIMENSION), dtype=np.float32)
        self.embedded = 0  # texts this process embedded (cache misses)
        self.embed_seconds = 0.0
        with self._locked():
            self._load()

    @contextmanager
    def _locked(self) -> Iterator[None]:
        import fcntl

        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / "lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _load(self) -> None:
        import numpy as np

        if not (self.vectors_file.is_file() and self.keys_file.is_file()):
            return
        keys = json.loads(self.keys_file.read_text())
        matrix = np.load(self.vectors_file)
        n = min(len(keys), len(matrix))
        if n > len(self.keys):
            self.keys = keys[:n]
            self.matrix = np.ascontiguousarray(matrix[:n], dtype=np.float32)
            self.row = {k: i for i, k in enumerate(self.keys)}

    @staticmethod
    def key(text: str) -> str:
        return hashlib.sha256(text.encode()).hexdigest()

    def add(self, keys: Sequence[str], vectors: NDArray[numpy.float32]) -> None:
        """Stores new rows: merged with what other runs saved meanwhile, then written."""
        import numpy as np

        with self._locked():
            self._load()
            fresh = [i for i, k in enumerate(keys) if k not in self.row]
            if not fresh:
                return
            self.matrix = np.concatenate([self.matrix, vectors[fresh]])
            for i in fresh:
                self.row[keys[i]] = len(self.keys)
                self.keys.append(keys[i])
            tmp_vectors = self.vectors_file.with_suffix(".tmp.npy")
            np.save(tmp_vectors, self.matrix)
            os.replace(tmp_vectors, self.vectors_file)
            tmp_keys = self.keys_file.with_suffix(".tmp")
            tmp_keys.write_text(json.dumps(self.keys))
            os.replace(tmp_keys, self.keys_file)

    def vectors(
        self, texts: Sequence[str], embedder: MiniLmEmbedder, console: Console
    ) -> NDArray[numpy.float32]:
        """The texts' vectors (one row each), embedding only those not cached yet."""
        import numpy as np

        keys = [self.key(t) for t in texts]
        todo = list(dict.fromkeys(k for k in keys if k not in self.row))
        if todo:
            text_of = dict(zip(keys, texts, strict=True))
            console.print(f"embedding {len(todo):,} passages not in the cache ...", markup=False)
            began = time.perf_counter()
            for start in range(0, len(todo), EMBED_SAVE_EVERY):
                part = todo[start : start + EMBED_SAVE_EVERY]
                self.add(part, embedder.embed([text_of[k] for k in part]))
                done = start + len(part)
                elapsed = time.perf_counter() - began
                rate = done / elapsed if elapsed > 0 else float("nan")
                console.print(
                    f"  {done:,}/{len(todo):,} embedded, {rate:.1f} passages/s, "
                    f"about {(len(todo) - done) / rate:.0f} s to go",
                    markup=False,
                )
            self.embedded += len(todo)
            self.embed_seconds += time.perf_counter() - began
        if not keys:
            return np.zeros((0, EMBEDDING_DIMENSION), np.float32)
        result: NDArray[numpy.float32] = self.matrix[[self.row[k] for k in keys]]
        return result


def embedding_cache() -> EmbeddingCache:
    from infra.embeddings import model_file

    with open(model_file(), "rb") as f:
        model = hashlib.file_digest(f, "sha256").hexdigest()[:16]
    return EmbeddingCache(CACHE / "embeddings" / f"minilm-{model}")


def fill(index: KbIndex, documents: Sequence[Prepared], vectors: Sequence[Any]) -> float:
    """Replaces every document into the index; the seconds it took."""
    began = time.perf_counter()
    for doc, matrix in zip(documents, vectors, strict=True):
        index.replace(doc.page.path, doc.chunks, matrix)
    return time.perf_counter() - began


# --- the evaluation ------------------------------------------------------------------------


@dataclass
class Quality:
    profile: str
    mode: str
    questions: int
    recall: float  # Recall@10
    ndcg: float  # nDCG@10, binary relevance of the first hit
    mrr: float  # MRR@10
    p50_ms: float  # one search, query embedding included
    ranks: list[int | None] = field(repr=False)  # of the first hit, per question (None: none)


def first_hit(paths: Sequence[str], relevant: set[str]) -> int | None:
    for rank, path in enumerate(paths, start=1):
        if path in relevant:
            return rank
    return None


def scores(ranks: Sequence[int | None]) -> tuple[float, float, float]:
    """Recall, nDCG and MRR at the results' depth."""
    n = len(ranks)
    if n == 0:
        return float("nan"), float("nan"), float("nan")
    hits = [r for r in ranks if r is not None]
    recall = len(hits) / n
    ndcg = sum(1.0 / math.log2(1 + r) for r in hits) / n
    mrr = sum(1.0 / r for r in hits) / n
    return recall, ndcg, mrr


def evaluate(
    profile: str,
    index: KbIndex,
    embedder: MiniLmEmbedder,
    questions: Sequence[Question],
    modes: Sequence[str] = MODES,
) -> list[Quality]:
    from commands.kb import search
    from commands.ports import KbScope

    scope = KbScope(bot=BOT)
    out = []
    for mode in modes:
        ranks: list[int | None] = []
        times: list[float] = []
        for question in questions:
            relevant = {PATH_PREFIX + label for label in question.labels}
            began = time.perf_counter()
            results = search(index, embedder, question.q, scope, limit=LIMIT, mode=mode)  # type: ignore[arg-type]
            times.append((time.perf_counter() - began) * 1000)
            ranks.append(first_hit([r.chunk.path for r in results], relevant))
        recall, ndcg, mrr = scores(ranks)
        out.append(
            Quality(
                profile,
                mode,
                len(questions),
                recall,
                ndcg,
                mrr,
                percentile(sorted(times), 50),
                ranks,
            )
        )
    return out


def sweep(
    index: KbIndex, embedder: MiniLmEmbedder, questions: Sequence[Question]
) -> list[tuple[float, Quality]]:
    """Hybrid quality for each of SWEEP_WEIGHTS as commands.kb.SEMANTIC_WEIGHT."""
    import commands.kb

    kept = commands.kb.SEMANTIC_WEIGHT
    out = []
    try:
        for weight in SWEEP_WEIGHTS:
            commands.kb.SEMANTIC_WEIGHT = weight
            out.append((weight, evaluate("sqlite", index, embedder, questions, ("hybrid",))[0]))
    finally:
        commands.kb.SEMANTIC_WEIGHT = kept
    return out


# --- latency at scale ----------------------------------------------------------------------


@dataclass
class Latency:
    chunks: int
    corpus_chunks: int
    copies: int  # repetitions of the corpus' passages under other paths
    fill_seconds: float
    queries: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    load_average: float  # the machine's 1-minute load average when the searches ended


def grow(index: KbIndex, documents: Sequence[Prepared], vectors: Sequence[Any], target: int) -> int:
    """Adds copies of the documents under distinct paths until the index holds `target`
    passages (the last document cut short); the number of copies begun."""
    from dataclasses import replace

    count = index.count()
    copy = 0
    while count < target:
        copy += 1
        for doc, matrix in zip(documents, vectors, strict=True):
            if count >= target:
                break
            path = f"{PATH_PREFIX}copy-{copy}/{doc.page.label}"
            take = min(len(doc.chunks), target - count)
            chunks = [replace(c, id=f"{path}#{c.position}", path=path) for c in doc.chunks[:take]]
            index.replace(path, chunks, matrix[:take])
            count += take
    return copy


def latency(
    index: KbIndex,
    embedder: MiniLmEmbedder,
    documents: Sequence[Prepared],
    vectors: Sequence[Any],
    questions: Sequence[Question],
    target: int,
    queries: int,
) -> Latency:
    from commands.kb import search
    from commands.ports import KbScope

    corpus_chunks = index.count()
    began = time.perf_counter()
    copies = grow(index, documents, vectors, target)
    filled = time.perf_counter() - began
    scope = KbScope(bot=BOT)
    texts = [q.q for q in questions]
    for text in texts[-5:]:  # warm-up (the model's first runs), with questions timed last
        search(index, embedder, text, scope, limit=LIMIT)
    times = []
    for i in range(queries):
        began = time.perf_counter()
        search(index, embedder, texts[i % len(texts)], scope, limit=LIMIT)
        times.append((time.perf_counter() - began) * 1000)
    ordered = sorted(times)
    return Latency(
        chunks=index.count(),
        corpus_chunks=corpus_chunks,
        copies=copies,
        fill_seconds=filled,
        queries=queries,
        p50_ms=percentile(ordered, 50),
        p95_ms=percentile(ordered, 95),
        p99_ms=percentile(ordered, 99),
        mean_ms=sum(ordered) / len(ordered),
        load_average=os.getloadavg()[0],
    )


# --- ingestion rate ------------------------------------------------------------------------


@dataclass
class Rate:
    profile: str
    documents: int
    chunks: int
    extract_s: float
    chunk_s: float
    embed_s: float
    write_s: float

    @property
    def total_s(self) -> float:
        return self.extract_s + self.chunk_s + self.embed_s + self.write_s

    @property
    def documents_per_s(self) -> float:
        return self.documents / self.total_s if self.total_s else float("nan")

    @property
    def chunks_per_s(self) -> float:
        return self.chunks / self.total_s if self.total_s else float("nan")


def ingestion_rates(
    pages: Sequence[Page], embedder: MiniLmEmbedder, indexes: Sequence[tuple[str, KbIndex]]
) -> list[Rate]:
    """Times extract + chunk + embed (no cache, in the worker's batches) once, then each
    profile's replace of the same passages."""
    import numpy as np

    from infra.kb_worker import EMBED_BATCH

    ingested = prepare(pages)
    began = time.perf_counter()
    vectors = []
    for doc in ingested.documents:
        parts = [
            embedder.embed(doc.texts[s : s + EMBED_BATCH])
            for s in range(0, len(doc.texts), EMBED_BATCH)
        ]
        vectors.append(np.concatenate(parts))
    embedding = time.perf_counter() - began
    chunks = sum(len(d.chunks) for d in ingested.documents)
    return [
        Rate(
            profile=name,
            documents=len(ingested.documents),
            chunks=chunks,
            extract_s=ingested.seconds_extract,
            chunk_s=ingested.seconds_chunk,
            embed_s=embedding,
            write_s=fill(index, ingested.documents, vectors),
        )
        for name, index in indexes
    ]


# --- profiles ------------------------------------------------------------------------------


@contextmanager
def sqlite_index(directory: Path, name: str) -> Iterator[KbIndex]:
    from infra.kb_sqlite import SqliteKbIndex

    index = SqliteKbIndex(directory / name / "index.sqlite3")
    try:
        yield index
    finally:
        index.close()


@contextmanager
def opensearch_index(url: str) -> Iterator[KbIndex]:
    """A fresh index on the node, deleted on exit."""
    from opensearchpy import OpenSearch

    from infra.kb_opensearch import OpenSearchKbIndex

    name = f"gbbench-kb-{uuid.uuid4().hex[:12]}"
    index = OpenSearchKbIndex(url, name)
    try:
        yield index
    finally:
        index.close()
        client = OpenSearch(hosts=[url], timeout=30)
        try:
            client.indices.delete(index=name, params={"ignore_unavailable": "true"})
        finally:
            client.close()


def opensearch_unavailable(url: str) -> str | None:
    from commands.ports import KbIndexUnavailable
    from infra.kb_opensearch import OpenSearchKbIndex

    index = OpenSearchKbIndex(url, f"gbbench-kb-probe-{uuid.uuid4().hex[:8]}")
    try:
        index.check()
    except KbIndexUnavailable as e:
        return str(e)
    except Exception as e:  # noqa: BLE001 - any failure means "not available"
        return f"{type(e).__name__}: {e}"
    finally:
        index.close()
    return None


# --- output --------------------------------------------------------------------------------


def quality_table(results: Sequence[Quality]) -> Table:
    out = Table(title=f"retrieval quality (top {LIMIT})")
    for column in ("profile", "mode", "questions", "Recall@10", "nDCG@10", "MRR@10", "p50 ms"):
        out.add_column(column, justify="left" if column in ("profile", "mode") else "right")
    for r in results:
        out.add_row(
            r.profile,
            r.mode,
            str(r.questions),
            f"{r.recall:.3f}",
            f"{r.ndcg:.3f}",
            f"{r.mrr:.3f}",
            f"{r.p50_ms:.1f}",
        )
    return out


def verdicts(results: Sequence[Quality]) -> list[str]:
    lines = []
    for profile in dict.fromkeys(r.profile for r in results):
        by_mode = {r.mode: r for r in results if r.profile == profile}
        if set(MODES) <= by_mode.keys():
            hybrid = by_mode["hybrid"]
            best = {
                metric: max(getattr(by_mode[m], metric) for m in ("lexical", "semantic"))
                for metric in ("recall", "ndcg", "mrr")
            }
            beats = [
                f"{name} {'>' if getattr(hybrid, metric) > best[metric] else '<='} "
                f"{best[metric]:.3f}"
                for metric, name in (("recall", "Recall@10"), ("ndcg", "nDCG@10"), ("mrr", "MRR"))
            ]
            won = all(getattr(hybrid, m) > best[m] for m in ("recall", "ndcg"))
            lines.append(
                f"{profile}: hybrid {'beats' if won else 'does NOT beat'} both alone "
                f"(vs the better of lexical/semantic: {', '.join(beats)})"
            )
    return lines


def rate_table(rates: Sequence[Rate]) -> Table:
    out = Table(title="ingestion rate (uncached: extract + chunk + embed + replace)")
    columns = ("profile", "documents", "passages", "extract s", "chunk s", "embed s",
               "replace s", "documents/s", "passages/s")  # fmt: skip
    for column in columns:
        out.add_column(column, justify="left" if column == "profile" else "right")
    for r in rates:
        out.add_row(
            r.profile,
            str(r.documents),
            str(r.chunks),
            f"{r.extract_s:.2f}",
            f"{r.chunk_s:.2f}",
            f"{r.embed_s:.2f}",
            f"{r.write_s:.2f}",
            f"{r.documents_per_s:.2f}",
            f"{r.chunks_per_s:.1f}",
        )
    return out


def write_json(
    path: Path,
    args: argparse.Namespace,
    corpus_info: dict[str, Any],
    questions: Sequence[Question],
    quality: Sequence[Quality],
    swept: Sequence[tuple[float, Quality]],
    timing: Latency | None,
    rates: Sequence[Rate],
) -> None:
    import commands.kb

    def summary(q: Quality) -> dict[str, Any]:
        return {k: v for k, v in asdict(q).items() if k != "ranks"}

    document = {
        "machine": machine(),
        "params": {
            "quick": args.quick,
            "pages": args.pages,
            "questions": args.questions,
            "latency_chunks": args.latency_chunks,
            "latency_queries": args.latency_queries,
            "ingest_pages": args.ingest_pages,
            "opensearch": bool(args.opensearch),
            "search": {
                "limit": LIMIT,
                "candidates": commands.kb.CANDIDATES,
                "semantic_weight": commands.kb.SEMANTIC_WEIGHT,
                "cos_floor": commands.kb.COS_FLOOR,
                "cos_ceil": commands.kb.COS_CEIL,
            },
        },
        "corpus": corpus_info,
        "quality": [summary(q) for q in quality],
        "sweep": [{"semantic_weight": w, **summary(q)} for w, q in swept],
        "latency": asdict(timing) if timing else None,
        "ingestion": [
            {**asdict(r), "documents_per_s": r.documents_per_s, "chunks_per_s": r.chunks_per_s}
            for r in rates
        ],
        "questions": [
            {
                "q": question.q,
                "page": question.page,
                "first_hit": {f"{r.profile}/{r.mode}": r.ranks[i] for r in quality},
            }
            for i, question in enumerate(questions)
        ],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(describe_json(document), indent=2) + "\n")


# --- main ----------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench.kb",
        description="Knowledge base: retrieval quality (lexical, semantic, hybrid) over the "
        "Python and Flask documentation, search latency at 100,000 passages, ingestion rate.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke run: {QUICK['pages']} pages, {QUICK['questions']} questions, latency at "
        f"{QUICK['latency_chunks']:,} passages x {QUICK['latency_queries']} searches, "
        f"ingestion of {QUICK['ingest_pages']} pages (each overridable below)",
    )
    parser.add_argument(
        "--pages", type=at_least(int, 1, strict=False), default=None,
        help="pages of the corpus to index (default: all; the questions' pages always are)",
    )  # fmt: skip
    parser.add_argument(
        "--questions", type=at_least(int, 1, strict=False), default=None,
        help="questions to ask, taken evenly over the file (default: all)",
    )  # fmt: skip
    parser.add_argument(
        "--latency-chunks", type=at_least(int, 0, strict=False), default=None,
        help="passages in the SQLite index for the latency run (default 100,000; 0 skips it)",
    )  # fmt: skip
    parser.add_argument(
        "--latency-queries", type=at_least(int, 1, strict=False), default=None,
        help="hybrid searches timed (default 200)",
    )  # fmt: skip
    parser.add_argument(
        "--ingest-pages", type=at_least(int, 0, strict=False), default=None,
        help="pages ingested uncached for the ingestion rate (default 50; 0 skips it)",
    )  # fmt: skip
    parser.add_argument(
        "--opensearch", default=os.environ.get(OPENSEARCH_ENV, "").strip() or None,
        metavar="URL",
        help=f"also the scaled profile on this OpenSearch node (default: ${OPENSEARCH_ENV})",
    )  # fmt: skip
    parser.add_argument(
        "--sweep", action="store_true",
        help="also hybrid quality on SQLite for semantic weights "
        f"{', '.join(f'{w:g}' for w in SWEEP_WEIGHTS)}",
    )  # fmt: skip
    parser.add_argument(
        "--json", type=Path, default=None, metavar="PATH",
        help="where to write the JSON (default bench/results/kb.json, kb-quick.json with --quick)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    defaults = QUICK if args.quick else {"pages": None, "questions": None,
        "latency_chunks": 100_000, "latency_queries": 200, "ingest_pages": 50}  # fmt: skip
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.json is None:
        args.json = RESULTS / ("kb-quick.json" if args.quick else "kb.json")
    return args


def run(args: argparse.Namespace, console: Console) -> int:
    from infra.embeddings import MODEL_NAME, MiniLmEmbedder

    status = 0
    began = time.perf_counter()
    all_pages = corpus(console)
    pages, questions = select(all_pages, load_questions(), args.pages, args.questions)
    per_source = {s.package: sum(1 for p in pages if p.source == s.package) for s in SOURCES}
    console.print(
        f"corpus: {len(pages)} pages ("
        + ", ".join(f"{n} of {package}" for package, n in per_source.items())
        + f"; {len(all_pages)} selected in all); {len(questions)} questions over "
        f"{len({q.page for q in questions})} distinct pages",
        markup=False,
    )
    console.print(
        "selection: python3.11-doc: "
        + ", ".join(f"{s}/" for s in SOURCES[0].sections)
        + ", glossary, bugs (no indexes, what's new, changelog); python-flask-doc: all but "
        "404, indexes, search, changelog",
        markup=False,
    )

    ingested = prepare(pages)
    chunks = sum(len(d.chunks) for d in ingested.documents)
    console.print(
        f"extracted and chunked {len(ingested.documents)} pages into {chunks:,} passages in "
        f"{ingested.seconds_extract + ingested.seconds_chunk:.1f} s",
        markup=False,
    )
    for label, why in ingested.skipped.items():
        console.print(f"  unreadable (as the server would report it): {label}: {why}", markup=False)

    embedder = MiniLmEmbedder()
    cache = embedding_cache()
    texts = [t for d in ingested.documents for t in d.texts]
    matrix = cache.vectors(texts, embedder, console)
    vectors = []
    at = 0
    for doc in ingested.documents:
        vectors.append(matrix[at : at + len(doc.texts)])
        at += len(doc.texts)
    console.print(
        f"embeddings ({MODEL_NAME}): {cache.embedded:,} embedded now"
        + (f" in {cache.embed_seconds:.0f} s" if cache.embedded else "")
        + f", {len(texts) - cache.embedded:,} from the cache ({shown(cache.directory)})",
        markup=False,
    )
    corpus_info = {
        "sources": per_source,
        "pages": len(pages),
        "pages_indexed": len(ingested.documents),
        "unreadable": ingested.skipped,
        "passages": chunks,
        "questions": len(questions),
        "question_pages": len({q.page for q in questions}),
    }

    quality: list[Quality] = []
    swept: list[tuple[float, Quality]] = []
    timing: Latency | None = None
    rates: list[Rate] = []
    with tempfile.TemporaryDirectory(prefix="gbbench-kb-") as tmp:
        directory = Path(tmp)
        with sqlite_index(directory, "eval") as index:
            seconds = fill(index, ingested.documents, vectors)
            console.print(
                f"sqlite: {index.count():,} passages written in {seconds:.1f} s; asking "
                f"{len(questions)} questions x {len(MODES)} modes ...",
                markup=False,
            )
            quality += evaluate("sqlite", index, embedder, questions)
            if args.sweep:
                console.print("sqlite: sweeping the semantic weight ...", markup=False)
                swept = sweep(index, embedder, questions)
            if args.latency_chunks:
                console.print(
                    f"sqlite: filling to {args.latency_chunks:,} passages for the latency run ...",
                    markup=False,
                )
                timing = latency(
                    index,
                    embedder,
                    ingested.documents,
                    vectors,
                    load_questions(),
                    args.latency_chunks,
                    args.latency_queries,
                )
        opensearch: str | None = args.opensearch
        if opensearch:
            why = opensearch_unavailable(opensearch)
            if why is not None:
                console.print(f"opensearch: skipped, cannot use {opensearch}: {why}", markup=False)
                opensearch = None
                status = 1
        if opensearch:
            with opensearch_index(opensearch) as index:
                seconds = fill(index, ingested.documents, vectors)
                console.print(
                    f"opensearch: {index.count():,} passages written in {seconds:.1f} s "
                    f"(a fresh index); asking {len(questions)} questions x {len(MODES)} modes ...",
                    markup=False,
                )
                quality += evaluate("opensearch", index, embedder, questions)
        if args.ingest_pages:
            sample = spread(all_pages, args.ingest_pages)
            console.print(f"ingestion rate: {len(sample)} pages, uncached ...", markup=False)
            with rate_indexes(directory, opensearch) as indexes:
                rates = ingestion_rates(sample, embedder, indexes)

    console.print(quality_table(quality))
    for line in verdicts(quality):
        console.print(line, markup=False)
    if swept:
        out = Table(title="hybrid on sqlite by semantic weight (commands.kb.SEMANTIC_WEIGHT)")
        for column in ("weight", "Recall@10", "nDCG@10", "MRR@10"):
            out.add_column(column, justify="right")
        for weight, q in swept:
            out.add_row(f"{weight:g}", f"{q.recall:.3f}", f"{q.ndcg:.3f}", f"{q.mrr:.3f}")
        console.print(out)
    if timing is not None:
        console.print(
            f"search latency, embedded profile (SQLite), {timing.chunks:,} passages: the "
            f"corpus' {timing.corpus_chunks:,} real passages and vectors repeated under "
            f"distinct paths ({timing.copies} copies, filled in {timing.fill_seconds:.0f} s); "
            f"{timing.queries} hybrid searches through commands.kb.search, query embedding "
            f"included: p50 {timing.p50_ms:.1f} ms, p95 {timing.p95_ms:.1f} ms, "
            f"p99 {timing.p99_ms:.1f} ms, mean {timing.mean_ms:.1f} ms (load average "
            f"{timing.load_average:.1f} on {os.cpu_count()} CPUs)",
            markup=False,
        )
    if rates:
        console.print(rate_table(rates))
    write_json(args.json, args, corpus_info, questions, quality, swept, timing, rates)
    console.print(
        f"wrote {shown(args.json)}; {time.perf_counter() - began:.0f} s in all", markup=False
    )
    return status


@contextmanager
def rate_indexes(directory: Path, opensearch: str | None) -> Iterator[list[tuple[str, KbIndex]]]:
    """Fresh indexes for the ingestion rate: SQLite, and OpenSearch when given."""
    with sqlite_index(directory, "rate") as sqlite:
        if opensearch is None:
            yield [("sqlite", sqlite)]
            return
        with opensearch_index(opensearch) as scaled:
            yield [("sqlite", sqlite), ("opensearch", scaled)]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    console = make_console()
    print_machine(console)
    try:
        return run(args, console)
    except KeyboardInterrupt:
        console.print("interrupted")
        return 130
    except (RuntimeError, KbIndexUnavailable) as e:
        console.print(f"bench failed: {e}", markup=False)
        return 1


if __name__ == "__main__":
    sys.exit(main())

"""Knowledge base: hybrid search, reindex requests, the dialog keywords and the answer step.

Search is hybrid: the index's lexical retriever (BM25) and its semantic one (cosine of
all-MiniLM-L6-v2 embeddings) each propose CANDIDATES passages; each candidate gets a score in
[0, 1] that means the same in every query, so that a threshold is meaningful:

- semantic part: the cosine, mapped linearly from [COS_FLOOR, COS_CEIL] onto [0, 1] (clipped).
  For this model an unrelated passage scores about 0-0.2 and a passage that answers about
  0.5-0.8. A candidate only the lexical retriever found gets its exact cosine too
  (KbIndex.similarity), so a keyword match is judged by what it means like any other.
- lexical part: how much of the query the passage holds: the share of the query's terms (stems,
  stop words left out) that begin a word of its text, title or headings, times BM25_SHARE of
  its BM25 relative to the query's best (plus the rest). The share keeps a query whose every
  term is rare and matched apart from one that matched a single word; BM25 orders passages
  holding the same share.
- hybrid: SEMANTIC_WEIGHT of the one plus the rest of the other, a convex combination of
  normalised scores (Bruch et al., "An Analysis of Fusion Functions for Hybrid Retrieval",
  2023, found it at least as good as reciprocal-rank fusion once scores are normalised, and
  unlike RRF its value means the same across queries). Weights and bounds were chosen on half
  of the questions of bench/kb.py's quality evaluation (the odd ones) and hold on the other
  half; its numbers are in the README.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal, Protocol
from uuid import UUID

from commands.idempotency import Claim, refuse_reused, save_new
from commands.ports import (
    Embedder,
    EventStore,
    KbChunk,
    KbHit,
    KbIndex,
    KbIndexUnavailable,
    KbScope,
    Saved,
)
from commands.turn import TurnContext
from domain.basic import PlatformError, Value
from domain.common import Actor, Forbidden
from domain.kb import InvalidCollection, ReindexJob, collection_name
from domain.kb_terms import fold, topic_terms

Mode = Literal["hybrid", "lexical", "semantic"]

CANDIDATES = 50  # passages each retriever proposes
COS_FLOOR = 0.15  # a cosine at or below: no semantic relevance
COS_CEIL = 0.75  # at or above: as relevant as this model says anything is
SEMANTIC_WEIGHT = 0.75  # of the hybrid score; the rest is lexical
BM25_SHARE = 0.75  # of the lexical part that follows BM25 (relative to the query's best)
MAX_QUERY = 1000  # characters of a query
MAX_SCOPE = 32  # collections a session may name with USE KB
SNIPPET = 90  # characters of context on each side of a highlighted match
SNIPPETS = 2  # highlighted excerpts per result

ANSWER_THRESHOLD = 0.45  # a passage this good answers a message no dialog takes
ANSWER_PASSAGES = 3  # passages given to the LLM as context

_RETRIEVERS = ThreadPoolExecutor(max_workers=8, thread_name_prefix="kb-lexical")


def _term_pattern(terms: Sequence[str]) -> re.Pattern[str] | None:
    """Words that begin with one of the stems (a stem is a prefix of its inflections)."""
    if not terms:
        return None
    alternatives = "|".join(re.escape(t) for t in sorted(terms, key=len, reverse=True))
    return re.compile(rf"(?<![^\W_])(?:{alternatives})[^\W_]*", re.IGNORECASE)


@dataclass(frozen=True)
class KbResult:
    chunk: KbChunk
    score: float  # 0-1, comparable across queries
    lexical: float  # the lexical part, 0-1
    semantic: float  # the semantic part, 0-1
    highlights: tuple[str, ...]  # HTML: escaped text, matched words in <mark>


def _unit(x: float) -> float:
    return 0.0 if x <= 0.0 else 1.0 if x >= 1.0 else x


def _semantic_part(cosine: float) -> float:
    return _unit((cosine - COS_FLOOR) / (COS_CEIL - COS_FLOOR))


def _coverage(topics: Sequence[str], chunk: KbChunk) -> float:
    """The share of the query's topic terms the passage holds: those that begin a word of its
    folded text, title or headings (a stem is a prefix of its inflections)."""
    if not topics:
        return 0.0
    text = fold(f"{chunk.title}\n{chunk.heading}\n{chunk.content}")
    return sum(1 for topic in topics if _begins_a_word(text, topic)) / len(topics)


def _begins_a_word(text: str, prefix: str) -> bool:
    at = text.find(prefix)  # str.find is many times quicker than a regular expression here
    while at != -1:
        if at == 0 or not text[at - 1].isalnum():
            return True
        at = text.find(prefix, at + 1)
    return False


def highlights(content: str, pattern: re.Pattern[str] | None) -> tuple[str, ...]:
    """Up to SNIPPETS excerpts of `content` around the query's words, as HTML (escaped, each
    match in <mark>), the excerpts with most matches first."""
    if pattern is None:
        return ()
    matches = [(m.start(), m.end()) for m in pattern.finditer(content)]
    if not matches:
        return ()
    windows: list[list[tuple[int, int]]] = []
    for span in matches:
        if windows and span[0] - windows[-1][0][0] <= 2 * SNIPPET:
            windows[-1].append(span)
        else:
            windows.append([span])
    windows.sort(key=len, reverse=True)
    out = []
    for window in windows[:SNIPPETS]:
        start = max(0, window[0][0] - SNIPPET)
        end = min(len(content), window[-1][1] + SNIPPET)
        # Whole words at the edges.
        while start > 0 and not content[start - 1].isspace() and window[0][0] - start < 2 * SNIPPET:
            start -= 1
        while (
            end < len(content) and not content[end].isspace() and end - window[-1][1] < 2 * SNIPPET
        ):
            end += 1
        parts = ["…" if start > 0 else ""]
        at = start
        for s, e in window:
            parts.append(html.escape(content[at:s]))
            parts.append(f"<mark>{html.escape(content[s:e])}</mark>")
            at = e
        parts.append(html.escape(content[at:end]))
        parts.append("…" if end < len(content) else "")
        out.append(" ".join("".join(parts).split()))
    return tuple(out)


def search(
    index: KbIndex,
    embedder: Embedder,
    query: str,
    scope: KbScope,
    limit: int = 10,
    threshold: float = 0.0,
    mode: Mode = "hybrid",
) -> list[KbResult]:
    """The best passages for `query` within `scope`, best first (see the module's text).
    Raises KbIndexUnavailable when the index cannot be reached."""
    query = query[:MAX_QUERY]
    lexical: list[KbHit] = []
    semantic: list[KbHit] = []
    # The retrievers run side by side: BM25 in SQLite or OpenSearch, the embedding and the
    # matrix product in onnxruntime and numpy (all of them release the GIL).
    pending = (
        _RETRIEVERS.submit(index.lexical, query, scope, CANDIDATES) if mode != "semantic" else None
    )
    vector = None
    try:
        if mode != "lexical" and query.strip():
            vector = embedder.embed([query])[0]
            semantic = index.semantic(vector, scope, CANDIDATES)
    finally:
        if pending is not None:
            lexical = pending.result()
    bm25 = {h.chunk_id: h.score for h in lexical}
    cosines = {h.chunk_id: h.score for h in semantic}
    unseen = [h.chunk_id for h in lexical if h.chunk_id not in cosines]
    if mode == "hybrid" and vector is not None and unseen:
        cosines.update(index.similarity(vector, unseen))
    ids = list(dict.fromkeys([*(h.chunk_id for h in semantic), *(h.chunk_id for h in lexical)]))
    if not ids:
        return []
    chunks = index.chunks(ids)
    topics = topic_terms(query)
    pattern = _term_pattern(topics)
    best_bm25 = max(bm25.values(), default=0.0)
    scored: list[tuple[float, float, float, KbChunk]] = []
    for chunk_id in ids:
        chunk = chunks.get(chunk_id)
        if chunk is None:  # replaced between the two calls
            continue
        cosine = cosines.get(chunk_id)
        sem = _semantic_part(cosine) if cosine is not None else 0.0
        lex = 0.0
        if lexical or mode == "hybrid":
            relative = bm25.get(chunk_id, 0.0) / best_bm25 if best_bm25 > 0 else 0.0
            lex = _coverage(topics, chunk) * (1 - BM25_SHARE + BM25_SHARE * relative)
        if mode == "hybrid":
            score = SEMANTIC_WEIGHT * sem + (1 - SEMANTIC_WEIGHT) * lex
        elif mode == "lexical":
            score = lex if bm25.get(chunk_id) else 0.0
        else:
            score = sem
        if score >= threshold and score > 0.0:
            scored.append((score, lex, sem, chunk))
    scored.sort(key=lambda s: (-s[0], s[3].id))
    return [
        KbResult(
            chunk=chunk,
            score=round(score, 4),
            lexical=round(lex, 4),
            semantic=round(sem, 4),
            highlights=highlights(chunk.content, pattern),
        )
        for score, lex, sem, chunk in scored[:limit]
    ]


# --- ports ----------------------------------------------------------------------------------


class KbDocuments(Protocol):
    """What the read model (projections.kb) tells the answer step."""

    def has_passages(self, bot: str, collections: frozenset[str] | None) -> bool:
        """Whether any of the bot's documents (in these collections) is indexed."""
        ...


@dataclass(frozen=True)
class KnowledgeBase:
    """The index and the model, as every user of the knowledge base gets them. `index` is
    a callable so that the index opens on first use (infra.kb_index)."""

    index: Callable[[], KbIndex]
    embedder: Embedder
    documents: KbDocuments

    def search(
        self,
        query: str,
        scope: KbScope,
        limit: int = 10,
        threshold: float = 0.0,
        mode: Mode = "hybrid",
    ) -> list[KbResult]:
        return search(self.index(), self.embedder, query, scope, limit, threshold, mode)

    def passages(self, bot: str, collections: Sequence[str], text: str) -> list[KbResult]:
        """The passages good enough to answer `text` for this bot (none when the bot has
        no indexed document: the model is then never loaded)."""
        scope = KbScope(bot=bot, collections=frozenset(collections) or None)
        if not text.strip() or not self.documents.has_passages(bot, scope.collections):
            return []
        try:
            return self.search(text, scope, ANSWER_PASSAGES, ANSWER_THRESHOLD)
        except KbIndexUnavailable:
            return []


def _source(result: KbResult) -> str:
    chunk = result.chunk
    name = chunk.path.rpartition("/")[2]
    title = chunk.title or name
    heading = chunk.heading
    if heading == title or heading.startswith(f"{title} > "):  # the title as the top heading
        heading = heading[len(title) + 3 :]
    where = f"{title} › {heading}" if heading else title
    return where if title == name else f"{where} ({name})"


def extractive_answer(results: Sequence[KbResult]) -> str:
    """The answer without an LLM: the best passage, quoted, with its source."""
    best = results[0]
    return f"{best.chunk.content}\n\nSource: {_source(best)}"


def cited_prompt(question: str, results: Sequence[KbResult]) -> str:
    """The LLM's prompt with the passages as numbered, cited context."""
    context = "\n\n".join(
        f"[{i}] {_source(r)}\n{r.chunk.content}" for i, r in enumerate(results, start=1)
    )
    return (
        "Answer the question from the passages below, citing them as [1], [2]...; if they do"
        " not answer it, say so.\n\n"
        f"Passages:\n{context}\n\nQuestion: {question}"
    )


# --- commands -------------------------------------------------------------------------------


class KbCommands:
    def __init__(self, store: EventStore) -> None:
        self.store = store

    def reindex(
        self, actor: Actor, bot: str | None, collection: str | None, claim: Claim | None = None
    ) -> tuple[UUID, Saved]:
        """Asks for documents to be read again: one collection of a bot, every collection of
        a bot, or everything. Only admins change collections."""
        refuse_reused(self.store, claim)
        if not actor.is_admin:
            raise Forbidden("only admins reindex the knowledge base")
        name = collection_name(collection) if collection is not None else None
        job = ReindexJob(bot=bot, collection=name, by=actor.email)
        return job.id, save_new(self.store, job, claim)


# --- the dialog keywords ----------------------------------------------------------------------


def _result_value(result: KbResult) -> dict[str, Any]:
    chunk = result.chunk
    return {
        "content": chunk.content,
        "score": result.score,
        "title": chunk.title,
        "heading": chunk.heading,
        "source": chunk.path.rpartition("/")[2],
        "path": chunk.path,
        "collection": chunk.collection,
    }


class DialogKnowledge:
    """The kb area of keywords for one turn: USE KB and CLEAR KB change the session's scope
    (an event of the session, saved with the turn); THINK KB searches it."""

    def __init__(self, kb: KnowledgeBase, turn: TurnContext) -> None:
        self.kb = kb
        self.turn = turn

    def use_kb(self, name: str) -> None:
        try:
            collection = collection_name(name)
        except InvalidCollection as e:
            raise PlatformError(f"USE KB: {e}") from None
        session = self.turn.session
        current = session.kb_collections
        if collection in current:
            return
        if len(current) >= MAX_SCOPE:
            raise PlatformError(f"USE KB: a session uses at most {MAX_SCOPE} collections")
        session.use_kb((*current, collection))

    def clear_kb(self) -> None:
        self.turn.session.use_kb(())

    def think_kb(self, question: str) -> Value:
        self.turn.budget.check_time()
        session = self.turn.session
        scope = KbScope(bot=session.bot_id, collections=frozenset(session.kb_collections) or None)
        try:
            found = self.kb.search(question, scope, limit=5)
        except KbIndexUnavailable as e:
            raise PlatformError(f"THINK KB: the knowledge base is unavailable ({e})") from None
        return [_result_value(r) for r in found]

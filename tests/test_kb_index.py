"""commands.ports.KbIndex's contract, on both backends: SQLite with in-memory BM25 postings
and matrix (infra.kb_sqlite) and OpenSearch (infra.kb_opensearch, when GB_TEST_OPENSEARCH
names a node).
Real embeddings throughout (infra.embeddings.MiniLmEmbedder)."""

from __future__ import annotations

import math
import os
import random
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import uuid4

import numpy
import pytest

from commands.ports import EMBEDDING_DIMENSION, KbChunk, KbHit, KbIndex, KbIndexUnavailable, KbScope
from domain.kb_terms import query_terms, terms, topic_terms
from infra.embeddings import MiniLmEmbedder
from infra.kb_sqlite import SqliteKbIndex

if TYPE_CHECKING:
    from numpy.typing import NDArray

ROOT = Path(__file__).resolve().parent.parent
EVERYWHERE = KbScope()

Embed = Callable[[Sequence[str]], "NDArray[numpy.float32]"]


@pytest.fixture(scope="module")
def embed() -> Embed:
    """The model, loaded once; each text embedded once (both backends use the same texts)."""
    model = MiniLmEmbedder()
    cache: dict[str, NDArray[numpy.float32]] = {}

    def vectors(texts: Sequence[str]) -> NDArray[numpy.float32]:
        missing = [text for text in dict.fromkeys(texts) if text not in cache]
        if missing:
            cache.update(zip(missing, model.embed(missing), strict=True))
        if not texts:
            return numpy.zeros((0, EMBEDDING_DIMENSION), numpy.float32)
        return numpy.stack([cache[text] for text in texts])

    return vectors


@pytest.fixture(params=["sqlite", "opensearch"])
def index(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[KbIndex]:
    if request.param == "sqlite":
        sqlite_index = SqliteKbIndex(tmp_path / "kb" / "kb.sqlite3")
        yield sqlite_index
        sqlite_index.close()
        return
    url = os.environ.get("GB_TEST_OPENSEARCH")
    if not url:
        pytest.skip("GB_TEST_OPENSEARCH is not set (an OpenSearch node, http://127.0.0.1:9200)")
    from infra.kb_opensearch import OpenSearchKbIndex

    name = f"test-kb-{uuid4().hex[:8]}"
    search_index: Any = OpenSearchKbIndex(url, name)
    try:
        yield search_index
    finally:
        drop = getattr(search_index, "drop", None)
        if drop is not None:
            drop()
        else:
            client = getattr(search_index, "client", None) or search_index._client
            client.indices.delete(index=name, params={"ignore_unavailable": "true"})
        search_index.close()


@pytest.fixture
def sqlite_file(tmp_path: Path) -> Path:
    return tmp_path / "kb" / "kb.sqlite3"


@pytest.fixture
def sqlite_index(sqlite_file: Path) -> Iterator[SqliteKbIndex]:
    opened = SqliteKbIndex(sqlite_file)
    yield opened
    opened.close()


def document(
    bot: str,
    collection: str,
    name: str,
    passages: Sequence[str],
    title: str = "",
    heading: str = "",
) -> tuple[str, list[KbChunk]]:
    path = f"{bot}.gbai/{bot}.gbkb/{collection}/{name}"
    chunks = [
        KbChunk(
            id=f"{path}#{position}",
            bot=bot,
            collection=collection,
            path=path,
            title=title or name,
            heading=heading,
            position=position,
            content=text,
        )
        for position, text in enumerate(passages)
    ]
    return path, chunks


def put(index: KbIndex, embed: Embed, doc: tuple[str, list[KbChunk]]) -> list[KbChunk]:
    path, chunks = doc
    index.replace(path, chunks, embed([chunk.content for chunk in chunks]))
    return chunks


def ids(hits: Sequence[KbHit]) -> list[str]:
    return [hit.chunk_id for hit in hits]


def near(
    index: KbIndex, embed: Embed, text: str, scope: KbScope = EVERYWHERE, k: int = 5
) -> list[str]:
    return ids(index.semantic(embed([text])[0], scope, k))


def words(index: KbIndex, query: str, scope: KbScope = EVERYWHERE, k: int = 5) -> list[str]:
    return ids(index.lexical(query, scope, k))


PLANTS = document(
    "acme",
    "science",
    "plants.md",
    [
        "Photosynthesis lets green plants turn sunlight, water and carbon dioxide into sugar.",
        "Roots anchor a plant in the soil and draw up water and minerals.",
        "Pollination moves pollen between flowers, often carried by bees.",
    ],
    title="How plants live",
)
HOLIDAYS = document(
    "acme",
    "hr",
    "holidays.md",
    [
        "Employees get twenty-five days of paid vacation every calendar year.",
        "Unused vacation days can be carried over until the end of March.",
    ],
    title="Holiday policy",
    heading="Leave",
)
EXPENSES = document(
    "acme",
    "finance",
    "expenses.md",
    ["Travel expenses are reimbursed within thirty days when the receipts are attached."],
    title="Expenses",
)
OTHER_BOT = document(
    "globex",
    "hr",
    "holidays.md",
    ["Globex staff receive thirty days of paid vacation and a winter bonus."],
    title="Globex holidays",
)


def test_replace_then_both_retrievers_find_it(index: KbIndex, embed: Embed) -> None:
    plants = put(index, embed, PLANTS)
    put(index, embed, HOLIDAYS)
    assert words(index, "photosynthesis")[0] == plants[0].id
    assert words(index, "How do BEES carry pollen?")[0] == plants[2].id
    assert near(index, embed, "how do plants make food from light")[0] == plants[0].id
    assert near(index, embed, "which insects help flowers reproduce")[0] == plants[2].id
    assert index.count() == 5
    assert index.paths() == {PLANTS[0], HOLIDAYS[0]}


def test_replacing_a_document_removes_its_old_chunks(index: KbIndex, embed: Embed) -> None:
    put(index, embed, PLANTS)
    put(index, embed, HOLIDAYS)
    path = PLANTS[0]
    _, rewritten = document(
        "acme", "science", "plants.md", ["Volcanoes erupt when magma reaches the surface."]
    )
    put(index, embed, (path, rewritten))
    assert index.count() == 3
    assert words(index, "photosynthesis") == []
    assert words(index, "pollination bees") == []
    assert words(index, "volcanoes magma") == [f"{path}#0"]
    # the id is the old first passage's: its old vector must be gone with it
    stale = index.semantic(embed([PLANTS[1][0].content])[0], EVERYWHERE, 10)
    assert len(stale) == 3 and stale[0].score < 0.9
    assert near(index, embed, "lava and eruptions")[0] == f"{path}#0"
    got = index.chunks([f"{path}#0", f"{path}#1", f"{path}#2"])
    assert set(got) == {f"{path}#0"}
    assert got[f"{path}#0"].content.startswith("Volcanoes")
    # the same document again changes nothing
    put(index, embed, (path, rewritten))
    assert index.count() == 3 and words(index, "volcanoes") == [f"{path}#0"]
    # no chunks at all: the document is gone
    index.replace(path, [], embed([]))
    assert index.count() == 2 and index.paths() == {HOLIDAYS[0]}
    assert words(index, "volcanoes") == [] and f"{path}#0" not in near(index, embed, "lava")


def test_delete(index: KbIndex, embed: Embed) -> None:
    put(index, embed, PLANTS)
    holidays = put(index, embed, HOLIDAYS)
    index.delete(PLANTS[0])
    assert index.paths() == {HOLIDAYS[0]} and index.count() == 2
    assert words(index, "photosynthesis sunlight") == []
    assert set(near(index, embed, "plants and sunlight", k=10)) == {c.id for c in holidays}
    index.delete(PLANTS[0])  # again: no error
    index.delete("nobody.gbai/nobody.gbkb/x/unknown.md")
    index.delete(HOLIDAYS[0])
    assert index.count() == 0 and index.paths() == set()
    assert words(index, "vacation") == [] and near(index, embed, "vacation") == []


def test_scope_by_bot_and_collections(index: KbIndex, embed: Embed) -> None:
    holidays = put(index, embed, HOLIDAYS)
    expenses = put(index, embed, EXPENSES)
    put(index, embed, PLANTS)
    globex = put(index, embed, OTHER_BOT)
    query = "how many days of paid vacation do employees get"
    acme = {c.id for c in holidays + expenses}
    everything = {c.id for c in holidays + expenses + globex}

    def both(scope: KbScope) -> tuple[set[str], set[str]]:
        return set(words(index, "days", scope, 20)), set(near(index, embed, query, scope, 20))

    plants = {c.id for c in PLANTS[1]}  # no "days" in them: found by the vectors only
    assert both(EVERYWHERE) == (everything, everything | plants)
    assert both(KbScope(bot="acme")) == (acme, acme | plants)
    assert both(KbScope(bot="globex")) == ({c.id for c in globex},) * 2
    assert set(near(index, embed, query, KbScope(bot="acme"), 2)) == {c.id for c in holidays}
    lexical, semantic = both(KbScope(bot="acme", collections=frozenset({"hr"})))
    assert lexical == semantic == {c.id for c in holidays}
    lexical, semantic = both(KbScope(bot="acme", collections=frozenset({"hr", "finance"})))
    assert lexical == semantic == acme
    lexical, semantic = both(KbScope(collections=frozenset({"hr"})))  # every bot's "hr"
    assert lexical == semantic == {c.id for c in holidays + globex}
    lexical, semantic = both(KbScope(bot="globex", collections=frozenset({"finance"})))
    assert lexical == semantic == set()
    for scope in (
        KbScope(bot="nobody"),
        KbScope(bot="acme", collections=frozenset()),
        KbScope(collections=frozenset({"nothing-here"})),
    ):
        assert both(scope) == (set(), set()), scope


def test_k_is_honoured_best_first(index: KbIndex, embed: Embed) -> None:
    _, chunks = document(
        "acme",
        "zoo",
        "animals.md",
        [
            "Zebra zebra zebra: stripes.",
            "The savanna is home to lions, giraffes, elephants, antelopes, hyenas and, near"
            " the river where the herds drink at dawn, the occasional zebra among many others.",
            "A zebra grazes.",
            "Elephants never forget.",
            "Penguins live in the cold south.",
        ],
    )
    put(index, embed, (chunks[0].path, chunks))
    lexical = index.lexical("zebra", EVERYWHERE, 2)
    assert len(lexical) == 2 and lexical[0].chunk_id == chunks[0].id
    assert lexical[0].score >= lexical[1].score > 0
    every = index.lexical("zebra elephants", EVERYWHERE, 50)
    assert len(every) == 4 and all(hit.score > 0 for hit in every)
    assert [hit.score for hit in every] == sorted((hit.score for hit in every), reverse=True)
    assert index.lexical("zebra", EVERYWHERE, 0) == []

    semantic = index.semantic(embed(["A zebra grazes."])[0], EVERYWHERE, 3)
    assert len(semantic) == 3
    assert semantic[0].chunk_id == chunks[2].id and semantic[0].score == pytest.approx(
        1.0, abs=1e-3
    )
    scores = [hit.score for hit in semantic]
    assert scores == sorted(scores, reverse=True) and all(-1 <= s <= 1 for s in scores)
    all_of_them = index.semantic(embed(["cold weather birds"])[0], EVERYWHERE, 50)
    assert len(all_of_them) == 5 and all_of_them[0].chunk_id == chunks[4].id
    assert all(-1 <= hit.score <= 1 for hit in all_of_them)
    assert index.semantic(embed(["zebra"])[0], EVERYWHERE, 0) == []


HOSTILE = [
    '"',
    '""',
    "'",
    "NEAR(a b)",
    "NEAR(photosynthesis sunlight, 2)",
    "title:x",
    "title : photosynthesis",
    "{title heading}: photosynthesis",
    "*",
    "photo*",
    "^photosynthesis",
    "a AND OR",
    "AND",
    "OR OR OR",
    "NOT",
    "(",
    ")",
    "((((photosynthesis",
    "-",
    "+",
    "\x00",
    "photo\x00synthesis",
    " ".join(f"word{i}" for i in range(1000)),
    " ".join(["photosynthesis"] * 1000),
    "🌱🌞💧",
    "🌱 photosynthesis 🌞",
    "",
    "   \t\n ",
    "\\",
    "%_%",
    "'; DROP TABLE chunks; --",
    "x" * 10_000,
    "\ud800",
    "\u0301\u0301",
    "٣٤٥",
    "ﬁ ligature",
]


def test_hostile_lexical_queries_never_raise(index: KbIndex, embed: Embed) -> None:
    plants = put(index, embed, PLANTS)
    for query in HOSTILE:
        hits = index.lexical(query, EVERYWHERE, 10)
        assert isinstance(hits, list), query
        assert all(isinstance(hit, KbHit) and hit.score > 0 for hit in hits), query
    assert index.lexical("", EVERYWHERE, 10) == []
    assert index.lexical(" \"'*()", EVERYWHERE, 10) == []
    # the user's operators are words like any other (or nothing), never the engine's syntax
    for query in (
        '"photosynthesis',
        "photosynthesis*",
        "(photosynthesis",
        "photosynthesis AND OR NOT",
        "-photosynthesis",
        "NOT photosynthesis",
        "photosynthesis^2",
        "🌱 photosynthesis 🌞",
    ):
        assert words(index, query)[:1] == [plants[0].id], query
    assert index.count() == 3


def test_unicode_and_diacritics(index: KbIndex, embed: Embed) -> None:
    _, chunks = document(
        "acme",
        "intl",
        "menu.md",
        [
            "Le café ouvre à huit heures.",
            "The cafe menu lists tea and cake.",
            "Straße und Brücke in München.",
            "Поезд в Москву отправляется вечером.",
            "旅行 東京 タワー",
        ],
    )
    put(index, embed, (chunks[0].path, chunks))
    assert set(words(index, "café")) == {chunks[0].id, chunks[1].id}
    assert set(words(index, "CAFE")) == {chunks[0].id, chunks[1].id}
    assert words(index, "bruecke brucke")[:1] == [chunks[2].id]
    assert words(index, "MÜNCHEN") == [chunks[2].id]
    assert words(index, "москву") == [chunks[3].id]
    assert words(index, "東京") == [chunks[4].id]
    assert near(index, embed, "Le café ouvre à huit heures.")[0] == chunks[0].id


def test_similarity_is_the_exact_cosine(index: KbIndex, embed: Embed) -> None:
    """Of the passages named (unknown ids left out), whatever their rank."""
    plants = put(index, embed, PLANTS)
    holidays = put(index, embed, HOLIDAYS)
    query = embed(["How many days off do employees get?"])[0]
    wanted = [holidays[1].id, plants[2].id, "acme.gbai/acme.gbkb/hr/nope.md#0", plants[2].id]
    found = index.similarity(query, wanted)
    assert set(found) == {holidays[1].id, plants[2].id}
    for chunk in (holidays[1], plants[2]):
        vector = embed([chunk.content])[0]
        exact = float(query @ vector / numpy.linalg.norm(query) / numpy.linalg.norm(vector))
        assert found[chunk.id] == pytest.approx(exact, abs=1e-3)
    assert found[holidays[1].id] > found[plants[2].id]
    assert index.similarity(query, []) == {}
    assert index.similarity(numpy.zeros(EMBEDDING_DIMENSION, numpy.float32), wanted) in (
        {},
        {holidays[1].id: 0.0, plants[2].id: 0.0},
    )
    index.delete(HOLIDAYS[0])
    assert set(index.similarity(query, wanted)) == {plants[2].id}


def test_chunks_by_id(index: KbIndex, embed: Embed) -> None:
    holidays = put(index, embed, HOLIDAYS)
    plants = put(index, embed, PLANTS)
    wanted = [plants[1].id, "nope", "", holidays[1].id, f"{PLANTS[0]}#99", plants[1].id]
    got = index.chunks(wanted)
    assert got == {plants[1].id: plants[1], holidays[1].id: holidays[1]}
    assert got[holidays[1].id].heading == "Leave" and got[holidays[1].id].position == 1
    assert index.chunks([]) == {}
    assert index.chunks(["nope"]) == {}
    many = index.chunks([c.id for c in holidays + plants] + [f"x{i}" for i in range(1200)])
    assert set(many) == {c.id for c in holidays + plants}


def test_paths_and_count(index: KbIndex, embed: Embed) -> None:
    assert index.paths() == set() and index.count() == 0
    index.check()
    for doc in (PLANTS, HOLIDAYS, EXPENSES, OTHER_BOT):
        put(index, embed, doc)
    assert index.paths() == {PLANTS[0], HOLIDAYS[0], EXPENSES[0], OTHER_BOT[0]}
    assert index.count() == 3 + 2 + 1 + 1
    index.delete(EXPENSES[0])
    assert index.paths() == {PLANTS[0], HOLIDAYS[0], OTHER_BOT[0]} and index.count() == 6
    index.check()


# --- SQLite only ----------------------------------------------------------------------------


def test_sqlite_persists_across_reopen(sqlite_file: Path, embed: Embed) -> None:
    first = SqliteKbIndex(sqlite_file)
    plants = put(first, embed, PLANTS)
    holidays = put(first, embed, HOLIDAYS)
    first.delete(HOLIDAYS[0])
    first.close()
    with pytest.raises(KbIndexUnavailable):
        first.count()
    again = SqliteKbIndex(sqlite_file)
    try:
        assert again.count() == 3 and again.paths() == {PLANTS[0]}
        assert words(again, "photosynthesis") == [plants[0].id]
        assert near(again, embed, "how do plants make food from light")[0] == plants[0].id
        assert again.chunks([c.id for c in plants + holidays]) == {c.id: c for c in plants}
    finally:
        again.close()


def test_sqlite_second_instance_sees_writes_and_deletes(sqlite_file: Path, embed: Embed) -> None:
    writer, reader = SqliteKbIndex(sqlite_file), SqliteKbIndex(sqlite_file)
    try:
        assert near(reader, embed, "plants") == []
        plants = put(writer, embed, PLANTS)
        assert near(reader, embed, "how do plants make food from light")[0] == plants[0].id
        holidays = put(writer, embed, HOLIDAYS)
        assert near(reader, embed, "paid vacation", k=1) == [holidays[0].id]
        writer.delete(PLANTS[0])
        assert set(near(reader, embed, "plants and sunlight", k=10)) == {c.id for c in holidays}
        _, rewritten = document(
            "acme", "hr", "holidays.md", ["Parental leave lasts sixteen weeks."]
        )
        put(writer, embed, (HOLIDAYS[0], rewritten))
        assert near(reader, embed, "paid vacation", k=10) == [rewritten[0].id]
        assert reader.chunks([rewritten[0].id])[rewritten[0].id].content.startswith("Parental")
        # and the other way round, interleaved with the first one's own writes
        put(reader, embed, PLANTS)
        put(writer, embed, EXPENSES)
        put(reader, embed, OTHER_BOT)
        expected = {c.id for c in PLANTS[1] + rewritten + EXPENSES[1] + OTHER_BOT[1]}
        for either in (writer, reader):
            assert set(near(either, embed, "anything at all", k=50)) == expected
            assert either.count() == len(expected)
    finally:
        writer.close()
        reader.close()


def test_sqlite_another_process_writes(sqlite_file: Path, embed: Embed) -> None:
    """A real second process (the ingestion worker's situation): its writes and deletes show
    in this process's semantic search."""
    mine = SqliteKbIndex(sqlite_file)
    try:
        put(mine, embed, PLANTS)
        assert len(near(mine, embed, "anything", k=50)) == 3
        vector = embed(["Employees get twenty-five days of paid vacation every calendar year."])[0]
        numpy.save(sqlite_file.parent / "vector.npy", vector)
        script = f"""
import numpy
from pathlib import Path
from commands.ports import KbChunk
from infra.kb_sqlite import SqliteKbIndex
kb = SqliteKbIndex(Path({str(sqlite_file)!r}))
vector = numpy.load(Path({str(sqlite_file.parent / "vector.npy")!r}))
kb.delete({PLANTS[0]!r})
chunk = KbChunk("a.gbai/a.gbkb/c/d.md#0", "a", "c", "a.gbai/a.gbkb/c/d.md", "D", "", 0,
                "Employees get twenty-five days of paid vacation every calendar year.")
kb.replace(chunk.path, [chunk], vector[None, :])
kb.close()
"""
        subprocess.run([sys.executable, "-c", script], cwd=ROOT, check=True, timeout=120)
        hits = mine.semantic(vector, EVERYWHERE, 50)
        assert ids(hits) == ["a.gbai/a.gbkb/c/d.md#0"]
        assert hits[0].score == pytest.approx(1.0, abs=1e-4)
        assert mine.count() == 1 and mine.paths() == {"a.gbai/a.gbkb/c/d.md"}
    finally:
        mine.close()


def bm25(documents: Sequence[tuple[str, list[KbChunk]]], query: str) -> dict[str, float]:
    """BM25 by the book over the passages (title x2, heading x1.5; FTS5's IDF), for the
    lexical retriever to agree with."""
    chunks = [chunk for _, found in documents for chunk in found]
    counted = []
    for chunk in chunks:
        weights: dict[str, float] = {}
        length = 0
        for text, weight in ((chunk.content, 1.0), (chunk.title, 2.0), (chunk.heading, 1.5)):
            for term in terms(text):
                weights[term] = weights.get(term, 0.0) + weight
                length += 1
        counted.append((chunk.id, weights, length))
    n = len(counted)
    mean = sum(length for _, _, length in counted) / n
    scores: dict[str, float] = {}
    for term in dict.fromkeys(terms(query)):
        df = sum(1 for _, weights, _ in counted if term in weights)
        idf = math.log((n - df + 0.5) / (df + 0.5)) if df else 0.0
        idf = idf if idf > 0 else 1e-6
        for chunk_id, weights, length in counted:
            tf = weights.get(term)
            if tf:
                norm = 1.2 * (1 - 0.75 + 0.75 * length / mean)
                scores[chunk_id] = scores.get(chunk_id, 0.0) + idf * tf * 2.2 / (tf + norm)
    return scores


def test_sqlite_lexical_scores_are_bm25(sqlite_index: SqliteKbIndex, embed: Embed) -> None:
    """Exact BM25 over the live passages only (a replaced or deleted document counts in no
    IDF and no mean length), in this instance and in one that loads the file."""
    holidays = (HOLIDAYS[0], [replace(c, heading="Leave > Annual") for c in HOLIDAYS[1]])
    for doc in (PLANTS, holidays, EXPENSES, OTHER_BOT, PLANTS):
        put(sqlite_index, embed, doc)
    put(sqlite_index, embed, (EXPENSES[0], EXPENSES[1][:1]))
    sqlite_index.delete(OTHER_BOT[0])
    live = [PLANTS, holidays, (EXPENSES[0], EXPENSES[1][:1])]
    queries = [
        "vacation days per year",
        "plants sunlight water",
        "annual leave",
        "the receipts of travel expenses",
        "water",
        "nothing like it",
    ]
    fresh = SqliteKbIndex(sqlite_index.path)
    try:
        for query in queries:
            expected = bm25(live, query)
            for searched in (sqlite_index, fresh):
                got = {h.chunk_id: h.score for h in searched.lexical(query, EVERYWHERE, 50)}
                assert got == pytest.approx(expected, rel=1e-5), query
                ranked = ids(searched.lexical(query, EVERYWHERE, 50))
                assert [got[i] for i in ranked] == sorted(got.values(), reverse=True)
    finally:
        fresh.close()
    conn = sqlite3.connect(sqlite_index.path)
    try:
        (rows,) = conn.execute("SELECT count(*) FROM chunks").fetchone()
        assert rows == 3 + 2 + 1 == sqlite_index.count()
        assert conn.execute("SELECT value FROM meta WHERE key = 'rows'").fetchone() == (rows,)
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        vocabulary = dict(conn.execute("SELECT id, term FROM terms"))
        for blob, weights, length, content in conn.execute(
            "SELECT terms, weights, length, content FROM chunks"
        ):
            stored = numpy.frombuffer(blob, "<i4")
            assert len(stored) == len(numpy.frombuffer(weights, "<f4")) and length > 0
            assert set(terms(content)) <= {vocabulary[int(i)] for i in stored}
    finally:
        conn.close()


def test_sqlite_opens_an_older_schema_empty(sqlite_file: Path, embed: Embed) -> None:
    """An index file of schema 1 (FTS5) is emptied, then filled again like a new one (the
    ingestion worker's sweep re-reads every document)."""
    sqlite_file.parent.mkdir(parents=True)
    conn = sqlite3.connect(sqlite_file)
    conn.executescript(
        """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
        INSERT INTO meta VALUES ('schema', 1), ('generation', 7), ('rows', 1);
        CREATE TABLE chunks (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT, bot TEXT,
            collection TEXT, path TEXT, title TEXT, heading TEXT, position INTEGER,
            content TEXT, vector BLOB);
        INSERT INTO chunks VALUES (1, 'x#0', 'acme', 'c', 'x', 't', '', 0, 'old', x'00');
        CREATE VIRTUAL TABLE kb_fts USING fts5(content, title, heading, content = 'chunks',
            content_rowid = 'seq');
        CREATE TRIGGER chunks_fts_insert AFTER INSERT ON chunks BEGIN
            INSERT INTO kb_fts (rowid, content, title, heading)
            VALUES (new.seq, new.content, new.title, new.heading);
        END;
        """
    )
    conn.close()
    opened = SqliteKbIndex(sqlite_file)
    try:
        assert opened.count() == 0 and opened.paths() == set()
        plants = put(opened, embed, PLANTS)
        assert words(opened, "photosynthesis")[:1] == [plants[0].id]
    finally:
        opened.close()
    conn = sqlite3.connect(sqlite_file)
    try:
        names = {name for (name,) in conn.execute("SELECT name FROM sqlite_master")}
        assert "kb_fts" not in names and "chunks_fts_insert" not in names
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone() == (2,)
    finally:
        conn.close()
    newer = sqlite3.connect(sqlite_file)
    newer.execute("UPDATE meta SET value = 99 WHERE key = 'schema'")
    newer.commit()
    newer.close()
    with pytest.raises(KbIndexUnavailable, match="newer"):
        SqliteKbIndex(sqlite_file)


def test_sqlite_fuzzed_queries_never_raise(sqlite_index: SqliteKbIndex, embed: Embed) -> None:
    put(sqlite_index, embed, PLANTS)
    rng = random.Random(11)
    alphabet = "\"'*^:()-+{}[]<>\\/ ,.;\x00\t\nNEARANDORNOTab0éßΩж東🌱\u0301\u200b\ufeff"
    for _ in range(500):
        query = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        assert isinstance(sqlite_index.lexical(query, EVERYWHERE, 5), list), query
    for _ in range(300):
        query = "".join(chr(rng.randint(1, 0x2FFFF)) for _ in range(rng.randint(1, 20)))
        assert isinstance(sqlite_index.lexical(query, EVERYWHERE, 5), list), query


def test_query_terms_are_words_only() -> None:
    assert query_terms("") == [] and query_terms('"*^:()') == []
    assert query_terms('title:Café "near(x" AND') == ["titl", "cafe", "near", "x", "and"]
    assert query_terms("a a A") == ["a"]
    assert query_terms("snake_case") == ["snake", "case"]
    assert query_terms("running RUNS") == ["run"]
    assert query_terms("ﬁle Straße") == ["file", "strass"]
    assert len(query_terms(" ".join(f"w{i}" for i in range(1000)))) == 64
    assert query_terms("x" * 500) == ["x" * 100]
    assert topic_terms("How do I read the files? Reading FILE") == ["read", "file"]
    assert len(topic_terms(" ".join(f"w{i}" for i in range(1000)))) == 64


def test_sqlite_rejects_mismatched_input(sqlite_index: SqliteKbIndex, embed: Embed) -> None:
    path, chunks = PLANTS
    with pytest.raises(ValueError):
        sqlite_index.replace(path, chunks, embed([chunks[0].content]))
    with pytest.raises(ValueError):
        sqlite_index.replace(HOLIDAYS[0], chunks, embed([c.content for c in chunks]))
    with pytest.raises(ValueError):
        sqlite_index.replace(path, [chunks[0], chunks[0]], embed([chunks[0].content] * 2))
    with pytest.raises(ValueError):
        sqlite_index.replace(path, chunks[:1], numpy.full((1, EMBEDDING_DIMENSION), numpy.nan))
    with pytest.raises(ValueError):
        sqlite_index.semantic(numpy.zeros(10, numpy.float32), EVERYWHERE, 5)
    with pytest.raises(ValueError):
        sqlite_index.semantic(numpy.full(EMBEDDING_DIMENSION, numpy.inf), EVERYWHERE, 5)
    assert sqlite_index.count() == 0


def test_sqlite_check_fails_when_the_file_is_gone(tmp_path: Path) -> None:
    kb = SqliteKbIndex(tmp_path / "deep" / "er" / "kb.sqlite3")
    try:
        kb.check()
        for suffix in ("", "-wal", "-shm"):
            (tmp_path / "deep" / "er" / f"kb.sqlite3{suffix}").unlink(missing_ok=True)
        with pytest.raises(KbIndexUnavailable):
            kb.check()
    finally:
        kb.close()
    with pytest.raises(KbIndexUnavailable):
        kb.check()
    (tmp_path / "a-directory").mkdir()
    with pytest.raises(KbIndexUnavailable):
        SqliteKbIndex(tmp_path / "a-directory")


def test_sqlite_searches_do_not_wait_for_a_writer(
    sqlite_index: SqliteKbIndex, embed: Embed
) -> None:
    """Another connection holds the write lock (a long write of another process): searches
    and reads answer at once, and then see that write."""
    plants = put(sqlite_index, embed, PLANTS)
    other = sqlite3.connect(sqlite_index.path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("UPDATE meta SET value = value + 1 WHERE key = 'generation'")
        other.execute("DELETE FROM chunks WHERE id = ?", (plants[2].id,))
        other.execute("UPDATE meta SET value = value - 1 WHERE key = 'rows'")  # (no log)
        started = time.monotonic()
        assert words(sqlite_index, "pollination")[:1] == [plants[2].id]
        assert near(sqlite_index, embed, "bees and flowers")[:1] == [plants[2].id]
        assert sqlite_index.count() == 3 and len(sqlite_index.chunks([plants[2].id])) == 1
        assert time.monotonic() - started < 2
        other.execute("COMMIT")
    finally:
        other.close()
    assert plants[2].id not in near(sqlite_index, embed, "bees and flowers")
    assert words(sqlite_index, "pollination") == [] and sqlite_index.count() == 2


def test_sqlite_threads_write_and_search_together(
    sqlite_index: SqliteKbIndex, embed: Embed
) -> None:
    """The ingestion worker writes while API threads search: no error, and every search sees
    whole documents (a replace is one transaction)."""
    texts = [f"Document {i} talks about topic number {i}." for i in range(40)]
    vectors = embed(texts)
    failures: list[BaseException] = []
    done = threading.Event()

    def write() -> None:
        try:
            for round_ in range(5):
                for i, text in enumerate(texts):
                    path, chunks = document(
                        "acme", f"c{i % 3}", f"d{i}.md", [text, text + " Again."]
                    )
                    sqlite_index.replace(path, chunks, numpy.stack([vectors[i], vectors[i]]))
                    if round_ % 2 and i % 7 == 0:
                        sqlite_index.delete(path)
        except BaseException as e:  # noqa: BLE001 - reported below
            failures.append(e)
        finally:
            done.set()

    def search() -> None:
        try:
            while not done.is_set():
                for hits in (
                    sqlite_index.semantic(vectors[3], KbScope(bot="acme"), 100),
                    sqlite_index.lexical("topic document again", EVERYWHERE, 100),
                ):
                    found = ids(hits)
                    paths = {hit.rsplit("#", 1)[0] for hit in found}
                    assert len(found) == 2 * len(paths)  # both passages of each document
        except BaseException as e:  # noqa: BLE001 - reported below
            failures.append(e)

    threads = [threading.Thread(target=write)] + [threading.Thread(target=search) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not failures, failures
    assert sqlite_index.count() == 2 * len(texts)
    assert len(sqlite_index.semantic(vectors[3], EVERYWHERE, 1000)) == 2 * len(texts)


def test_sqlite_matrix_survives_compaction(sqlite_index: SqliteKbIndex) -> None:
    """Thousands of rows replaced over and over (dead rows compacted, buffers grown): the
    matrix agrees with the file, here and in a fresh instance."""
    rng = numpy.random.default_rng(7)
    for round_ in range(4):
        for doc in range(30):
            path, chunks = document(
                "b", "c", f"{doc}.md", [f"r{round_} d{doc} p{p}" for p in range(100)]
            )
            vectors = rng.standard_normal((len(chunks), EMBEDDING_DIMENSION)).astype(numpy.float32)
            sqlite_index.replace(path, chunks, vectors)
    probe = rng.standard_normal(EMBEDDING_DIMENSION).astype(numpy.float32)
    hits = sqlite_index.semantic(probe, EVERYWHERE, 5000)
    assert len(hits) == 3000 and all(hit.chunk_id.startswith("b.gbai") for hit in hits)
    assert sqlite_index.lexical("r0 r1 r2", EVERYWHERE, 10) == []  # their postings: gone
    found = sqlite_index.lexical("r3 d7", EVERYWHERE, 5000)
    assert len(found) == 3000
    assert {h.chunk_id.split("#")[0] for h in found[:100]} == {"b.gbai/b.gbkb/c/7.md"}
    fresh = SqliteKbIndex(sqlite_index.path)
    try:
        assert fresh.lexical("r3 d7", EVERYWHERE, 5000) == found
        again = fresh.semantic(probe, EVERYWHERE, 5000)
        assert ids(again[:50]) == ids(hits[:50])
        assert [h.score for h in again] == pytest.approx([h.score for h in hits], abs=1e-6)
        assert len(fresh.chunks(ids(hits))) == 3000
        assert all(chunk.content.startswith("r3 ") for chunk in fresh.chunks(ids(hits)).values())
    finally:
        fresh.close()


def test_sqlite_removed_log_and_its_fallback(
    sqlite_file: Path, embed: Embed, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another instance learns what was deleted from the `removed` log of the last
    REMOVED_KEPT generations; when it fell further behind, from the live seqs."""
    monkeypatch.setattr("infra.kb_sqlite.REMOVED_KEPT", 3)
    writer, reader = SqliteKbIndex(sqlite_file), SqliteKbIndex(sqlite_file)
    try:
        for doc in (PLANTS, HOLIDAYS, EXPENSES, OTHER_BOT):
            put(writer, embed, doc)
        every = {c.id for doc in (PLANTS, HOLIDAYS, EXPENSES, OTHER_BOT) for c in doc[1]}
        assert set(near(reader, embed, "x", k=50)) == every
        writer.delete(EXPENSES[0])  # one generation behind: from the log
        every -= {c.id for c in EXPENSES[1]}
        assert set(near(reader, embed, "x", k=50)) == every
        for doc in (PLANTS, HOLIDAYS, PLANTS, HOLIDAYS, PLANTS):  # 5 behind: the log has 3
            put(writer, embed, doc)
        writer.delete(OTHER_BOT[0])
        every -= {c.id for c in OTHER_BOT[1]}
        assert set(near(reader, embed, "x", k=50)) == every
        assert len(near(reader, embed, "x", k=50)) == len(every)
        conn = sqlite3.connect(sqlite_file)
        try:
            logged = conn.execute("SELECT DISTINCT generation FROM removed").fetchall()
            (generation,) = conn.execute(
                "SELECT value FROM meta WHERE key = 'generation'"
            ).fetchone()
        finally:
            conn.close()
        assert {g for (g,) in logged} <= {generation - 2, generation - 1, generation}
    finally:
        writer.close()
        reader.close()

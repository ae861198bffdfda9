"""Knowledge-base endpoints: search, collections, reindex jobs."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.openapi.spec import Example
from litestar.params import Parameter

from api.deps import Provided
from api.errors import not_found
from api.examples import CREATED_AT, IDEMPOTENT, examples
from api.http import Limit, Offset, Writes, actor_of, claim_of
from commands.fields import InvalidField
from commands.idempotency import AlreadyClaimed
from commands.kb import MAX_QUERY, KbCommands, KbResult, KnowledgeBase, Mode
from commands.ports import KbScope
from domain.kb import MAX_NAME, NAME_PATTERN, InvalidCollection, collection_name
from projections.core import Page, ReadStore
from projections.kb import (
    CollectionView,
    ReindexView,
    list_collections,
    queued_job,
    reindex_job,
)

JOB_ID = "3f6d2c1a-8b4e-4f0a-9c7d-5e1b2a3c4d5e"
HANDBOOK = "hr.gbai/hr.gbkb/policies/handbook.pdf"
RESULT = {
    "id": f"{HANDBOOK}#12",
    "content": "Full-time employees get 25 days of paid vacation a year, accrued monthly.",
    "score": 0.82,
    "metadata": {
        "source": "handbook.pdf",
        "title": "Employee Handbook",
        "path": HANDBOOK,
        "chunk": 12,
        "collection": "policies",
        "bot": "hr",
        "heading": "Time off > Vacation",
    },
    "highlights": [
        "Full-time employees get 25 days of paid <mark>vacation</mark> a year, accrued monthly."
    ],
}
COLLECTION = {
    "name": "policies",
    "bot": "hr",
    "documents": 3,
    "chunks": 212,
    "last_indexed": CREATED_AT,
    "status": "ready",
    "pending": 0,
    "errors": [{"path": "hr.gbai/hr.gbkb/policies/scan.pdf", "error": "not a PDF file"}],
}
JOB = {
    "id": JOB_ID,
    "bot": "hr",
    "collection": "policies",
    "status": "running",
    "total": 3,
    "done": 1,
    "failed": 0,
    "requested_at": CREATED_AT,
    "requested_by": "admin@example.com",
}
LAYOUT = (
    "A bot's collections are folders of its package in drive: the files under"
    " `{bot}.gbai/{bot}.gbkb/{collection}/` (txt, md, html, pdf, docx, csv, json) are indexed"
    " in the background as they are uploaded, replaced or deleted."
)


class SearchMetadata(msgspec.Struct):
    source: str  # the file's name
    title: str  # the document's title
    path: str  # the file's drive path
    chunk: int  # the passage's position in the document, from 0
    collection: str
    bot: str
    heading: str  # the headings above the passage, " > " joined


class SearchResult(msgspec.Struct):
    id: str
    content: str
    score: float
    metadata: SearchMetadata
    highlights: list[str]


class SearchResponse(msgspec.Struct):
    results: list[SearchResult]
    query: str
    total: int


CollectionName = Annotated[str, msgspec.Meta(max_length=MAX_NAME, pattern=NAME_PATTERN)]


class ReindexRequest(msgspec.Struct, forbid_unknown_fields=True):
    collection: CollectionName | None = None
    bot_id: Annotated[str, msgspec.Meta(max_length=256)] | None = None


def _result(r: KbResult) -> SearchResult:
    c = r.chunk
    return SearchResult(
        id=c.id,
        content=c.content,
        score=r.score,
        metadata=SearchMetadata(
            source=c.path.rpartition("/")[2],
            title=c.title,
            path=c.path,
            chunk=c.position,
            collection=c.collection,
            bot=c.bot,
            heading=c.heading,
        ),
        highlights=list(r.highlights),
    )


def _collection(raw: str | None, field: str) -> str | None:
    if raw is None:
        return None
    try:
        return collection_name(raw)
    except InvalidCollection as e:
        raise InvalidField(field, f"`{field}`: {e}") from None


JobId = Annotated[
    UUID,
    Parameter(
        description="The reindex job's id, as `POST /api/kb/reindex` answered",
        examples=[Example(summary="A job's id", value=JOB_ID)],
    ),
]
BotFilter = Annotated[
    str | None,
    Parameter(
        max_length=256,
        description="Only this bot's collections (its package's name, `{bot}.gbai`)",
        examples=[Example(summary="The HR bot", value="hr")],
    ),
]


class KbController(Controller):
    path = "/api/kb"
    tags = ["Knowledge base"]

    @get(
        "/search",
        sync_to_thread=True,
        operation_id="searchKnowledgeBase",
        summary="Search the knowledge base",
        description="The passages that best answer `q`, best first. Retrieval is hybrid: BM25"
        " over the passages' words and semantic similarity of sentence embeddings"
        " (all-MiniLM-L6-v2, run by the server), fused into one `score` from 0 to 1 that"
        " means the same in every query (about 0.45 and above: the passage is on the"
        " question's subject), so `threshold` keeps only good passages. `highlights` are"
        " excerpts of `content` as HTML (the text escaped, the query's words in `<mark>`)."
        f" Every user may search every bot's collections. {LAYOUT}",
        response_description="The passages found",
        operation_class=examples(
            response={
                "A vacation question": {
                    "results": [RESULT],
                    "query": "how many vacation days do I get?",
                    "total": 1,
                }
            }
        ),
    )
    def search(
        self,
        kb: Provided[KnowledgeBase],
        q: Annotated[
            str,
            Parameter(
                min_length=1,
                max_length=MAX_QUERY,
                description="What to search for, in the user's words",
                examples=[Example(summary="A question", value="how many vacation days do I get?")],
            ),
        ],
        limit: Annotated[
            int,
            Parameter(ge=1, le=50, description="How many passages at most (1-50)", examples=[]),
        ] = 10,
        threshold: Annotated[
            float,
            Parameter(
                ge=0.0,
                le=1.0,
                description="Only passages scoring at least this (0-1)",
                examples=[Example(summary="Good matches only", value=0.45)],
            ),
        ] = 0.0,
        collection: Annotated[
            str | None,
            Parameter(
                max_length=MAX_NAME,
                pattern=NAME_PATTERN,
                description="A collection's name (`policies` or `policies.gbkb`): only its"
                " passages",
                examples=[Example(summary="The policies", value="policies")],
            ),
        ] = None,
        bot_id: BotFilter = None,
        mode: Annotated[
            Mode,
            Parameter(
                description="`hybrid` (default), or one retriever alone: `lexical` (BM25) or"
                " `semantic` (embeddings)",
                examples=[Example(summary="Both retrievers", value="hybrid")],
            ),
        ] = "hybrid",
    ) -> SearchResponse:
        name = _collection(collection, "collection")
        scope = KbScope(bot=bot_id, collections=frozenset([name]) if name else None)
        found = kb.search(q, scope, limit, threshold, mode)
        return SearchResponse([_result(r) for r in found], q, len(found))

    @get(
        "/collections",
        sync_to_thread=True,
        operation_id="listKnowledgeBaseCollections",
        summary="List the knowledge base's collections",
        description="Every collection (of every bot, or of `bot_id`), by bot then name: its"
        " documents and passages, when it was last indexed, whether documents are still"
        " being read (`status`: `indexing`, with `pending` counting them, or `ready`) and the"
        f" files that could not be read, each with its error (they block nothing else). {LAYOUT}",
        response_description="A page of collections",
        operation_class=examples(
            response={
                "One collection, one unreadable file": {
                    "data": [COLLECTION],
                    "pagination": {"total": 1, "limit": 50, "offset": 0, "has_more": False},
                }
            }
        ),
    )
    def collections(
        self,
        read: Provided[ReadStore],
        bot_id: BotFilter = None,
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> Page[CollectionView]:
        return list_collections(read, bot_id, limit, offset)

    @post(
        "/reindex",
        sync_to_thread=True,
        status_code=202,
        operation_id="reindexKnowledgeBase",
        summary="Reindex collections",
        description="Asks for documents to be read into the index again: one `collection`"
        " (of `bot_id`, or of every bot having one by that name), every collection of"
        " `bot_id`, or, with an empty body, everything. Answers `202` at once with the job and"
        " a `Location` to follow its progress at. Admins only (`403` for other users)."
        f" {IDEMPOTENT}",
        response_description="The reindex job",
        operation_class=examples(
            request={
                "One collection of one bot": {"collection": "policies", "bot_id": "hr"},
                "Everything": {},
            },
            response={"Under way": JOB},
        ),
    )
    def reindex(
        self,
        request: Request[Any, Any, Any],
        kb_commands: Provided[KbCommands],
        read: Provided[ReadStore],
        writes: Provided[Writes],
        data: ReindexRequest,
    ) -> Response[ReindexView]:
        actor = actor_of(request)
        claim = claim_of(request, actor, data)
        name = _collection(data.collection, "collection")
        try:
            job_id, saved = kb_commands.reindex(actor, data.bot_id, name, claim)
            writes.wait(saved)
        except AlreadyClaimed as replay:
            if not replay.same_request:
                raise
            job_id = UUID(replay.resource_id)
        location = f"/api/kb/reindex/{job_id}"
        found = writes.find(["kb"], lambda: reindex_job(read, str(job_id)))
        if found is None:  # the read model lags: the job is saved, not counted yet
            writes.timed_out()
            found = queued_job(str(job_id), data.bot_id, name, actor.email)
        return Response(found, status_code=202, headers={"Location": location})

    @get(
        "/reindex/{job_id:uuid}",
        sync_to_thread=True,
        operation_id="getReindexJob",
        summary="Follow a reindex job",
        description="How far the job is: `total` documents it asked for, `done` (read, or"
        " replaced since by a newer upload), `failed` (could not be read: see the"
        " collections' `errors`); `status` is `running` until every one is done.",
        response_description="The job",
        operation_class=examples(response={"Under way": JOB}),
    )
    def reindex_status(self, read: Provided[ReadStore], job_id: JobId) -> ReindexView:
        found = reindex_job(read, str(job_id))
        if found is None:
            raise not_found("reindex job")
        return found

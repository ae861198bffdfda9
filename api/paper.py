"""Paper endpoints, with history and past versions from the event stream."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from litestar import Controller, Request, Response, delete, get, post, put
from litestar.openapi.spec import Example
from litestar.params import Parameter

from api.deps import Provided
from api.errors import not_found
from api.examples import ANA, CONDITIONAL, CREATED_AT, IDEMPOTENT, LAGGING, UPDATED_AT, examples
from api.http import (
    Limit,
    Offset,
    Writes,
    actor_of,
    claim_of,
    create,
    etag,
    expected_version,
    written,
)
from commands.paper import CreateDocument, PaperCommands, UpdateDocument
from projections.core import Page, ReadStore
from projections.paper import (
    DocumentView,
    EventHistory,
    Revision,
    document_at,
    document_history,
    get_document,
    list_documents,
)

DOC_ID = "4b427b75-22d9-49f9-94d2-0bed12550655"
DOCUMENT = {
    "id": DOC_ID,
    "title": "Meeting Notes",
    "content": "# Meeting Notes",
    "type": "note",
    "owner": ANA,
    "version": 1,
    "created_at": CREATED_AT,
    "updated_at": CREATED_AT,
    "updated_by": ANA,
}
REVISED = {
    **DOCUMENT,
    "content": "# Meeting Notes\n- ship it",
    "version": 2,
    "updated_at": UPDATED_AT,
}

DocId = Annotated[
    UUID,
    Parameter(
        description="The document's id, as its creation answered (`id`, and the `Location` header)",
        examples=[Example(summary="A document's id", value=DOC_ID)],
    ),
]
WHO_SEES = "A document is its owner's (who created it) and admins'; another user's is `403`."


class PaperController(Controller):
    path = "/api/paper"
    tags = ["Paper"]

    @get(
        "/",
        sync_to_thread=True,
        operation_id="listDocuments",
        summary="List your documents",
        description="Your documents (an admin: everyone's), the most recently changed first,"
        " as they are now (content included). `type` keeps one type of document; `limit` and"
        " `offset` page through them.",
        response_description="A page of documents",
        operation_class=examples(
            response={
                "One note": {
                    "data": [REVISED],
                    "pagination": {"total": 1, "limit": 50, "offset": 0, "has_more": False},
                }
            }
        ),
    )
    def list_items(
        self,
        request: Request[Any, Any, Any],
        read: Provided[ReadStore],
        doc_type: Annotated[
            str | None,
            Parameter(
                query="type",
                description="Only documents of this type (as given at creation, e.g. `note`)",
                examples=[Example(summary="Notes", value="note")],
            ),
        ] = None,
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> Page[DocumentView]:
        return list_documents(read, actor_of(request), doc_type, limit, offset)

    @post(
        "/",
        sync_to_thread=True,
        status_code=201,
        operation_id="createDocument",
        summary="Create a document",
        description="Creates a document owned by you: a `title`, Markdown `content` (default"
        " empty) and a `type` (default `note`). It is version 1 of its history: every change"
        " is a new version, and each stays readable (`GET /api/paper/{doc_id}?version=N`)."
        " Answers `201` with the document, its `Location` and its `ETag`. Content that would"
        f" make a revision larger than 512 KiB is `413`. {IDEMPOTENT} {LAGGING}",
        response_description="The document created",
        operation_class=examples(
            request={
                "A note": {"title": "Meeting Notes", "content": "# Meeting Notes", "type": "note"},
                "Just a title": {"title": "Ideas"},
            },
            response={"The document created": DOCUMENT},
        ),
    )
    def create_item(
        self,
        request: Request[Any, Any, Any],
        paper: Provided[PaperCommands],
        read: Provided[ReadStore],
        writes: Provided[Writes],
        data: CreateDocument,
    ) -> Response[DocumentView]:
        actor = actor_of(request)
        claim = claim_of(request, actor, data)
        return create(
            writes,
            "paper",
            lambda: paper.create(actor, data, claim),
            lambda doc_id: f"/api/paper/{doc_id}",
            lambda doc_id: get_document(read, doc_id, actor),
        )

    @get(
        "/{doc_id:uuid}",
        sync_to_thread=True,
        operation_id="getDocument",
        summary="Get a document, or one of its past versions",
        description="The document as it is now, with its version as `ETag`; with `version=N`,"
        " the document as it was at version N, rebuilt from its history. An unknown id, a"
        " version the document never had, and (without `version`) a deleted document are"
        f" `404`. {WHO_SEES}",
        response_description="The document (at the version asked for)",
        operation_class=examples(response={"Version 1 of a note": DOCUMENT}),
    )
    def get_item(
        self,
        request: Request[Any, Any, Any],
        read: Provided[ReadStore],
        history: Provided[EventHistory],
        doc_id: DocId,
        version: Annotated[
            int | None,
            Parameter(
                ge=1,
                description="A past version (1 is the document as created; see its history)",
                examples=[Example(summary="As first created", value=1)],
            ),
        ] = None,
    ) -> Response[DocumentView]:
        actor = actor_of(request)
        if version is None:
            doc = get_document(read, str(doc_id), actor)
        else:
            doc = document_at(history, doc_id, version, actor)
        if doc is None:
            raise not_found("document" if version is None else f"document version {version}")
        return Response(doc, headers=etag(doc.version))

    @get(
        "/{doc_id:uuid}/history",
        sync_to_thread=True,
        operation_id="getDocumentHistory",
        summary="List a document's versions",
        description="Every version of the document, oldest first: its number, what happened"
        " (`created`, `revised`, `deleted`), who did it, when, and which fields changed. The"
        " history outlives the document: after a delete it ends with the `deleted` entry."
        f" {WHO_SEES}",
        response_description="A page of the document's versions",
        operation_class=examples(
            response={
                "Created, then revised": {
                    "data": [
                        {
                            "version": 1,
                            "event": "created",
                            "author": ANA,
                            "timestamp": CREATED_AT,
                            "changed": ["title", "content", "type"],
                        },
                        {
                            "version": 2,
                            "event": "revised",
                            "author": ANA,
                            "timestamp": UPDATED_AT,
                            "changed": ["content"],
                        },
                    ],
                    "pagination": {"total": 2, "limit": 50, "offset": 0, "has_more": False},
                }
            }
        ),
    )
    def history(
        self,
        request: Request[Any, Any, Any],
        history: Provided[EventHistory],
        doc_id: DocId,
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> Page[Revision]:
        revisions = document_history(history, doc_id, actor_of(request), limit, offset)
        if revisions is None:
            raise not_found("document")
        return revisions

    @put(
        "/{doc_id:uuid}",
        sync_to_thread=True,
        operation_id="updateDocument",
        summary="Revise a document",
        description="Changes the fields the body names (`title`, `content`, `type`) and keeps"
        " the others: a new version, recorded in the history. Only the owner or an admin may."
        f" Answers with the document and its new `ETag`. {CONDITIONAL.format(thing='document')}"
        f" {LAGGING}",
        response_description="The document as revised",
        operation_class=examples(
            request={
                "New content": {"content": "# Meeting Notes\n- ship it"},
                "Rename it": {"title": "Meeting Notes, 10 January"},
            },
            response={"Version 2": REVISED},
        ),
    )
    def update_item(
        self,
        request: Request[Any, Any, Any],
        paper: Provided[PaperCommands],
        read: Provided[ReadStore],
        writes: Provided[Writes],
        doc_id: DocId,
        data: UpdateDocument,
    ) -> Response[DocumentView]:
        actor = actor_of(request)
        saved = paper.update(actor, doc_id, data, expected_version(request))
        return written(
            writes, saved, f"/api/paper/{doc_id}", lambda: get_document(read, str(doc_id), actor)
        )

    @delete(
        "/{doc_id:uuid}",
        sync_to_thread=True,
        status_code=204,
        operation_id="deleteDocument",
        summary="Delete a document",
        description="Deletes the document: it leaves the list and its `GET` answers `404`;"
        " its history and past versions stay readable (an audit trail). Only the owner or an"
        f" admin may. Answers `204` with no body. {CONDITIONAL.format(thing='document')}"
        f" {LAGGING}",
        response_description="Deleted",
    )
    def delete_item(
        self,
        request: Request[Any, Any, Any],
        paper: Provided[PaperCommands],
        writes: Provided[Writes],
        doc_id: DocId,
    ) -> Response[None]:
        actor = actor_of(request)
        saved = paper.delete(actor, doc_id, expected_version(request))
        return written(writes, saved, f"/api/paper/{doc_id}", lambda: None)

"""Paper endpoints, with history and past versions from the event stream."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from litestar import Controller, Request, Response, delete, get, post, put
from litestar.params import Parameter

from api.deps import Provided
from api.errors import not_found
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


class PaperController(Controller):
    path = "/api/paper"
    tags = ["paper"]

    @get("/", sync_to_thread=True)
    def list_items(
        self,
        request: Request[Any, Any, Any],
        read: Provided[ReadStore],
        doc_type: Annotated[str | None, Parameter(query="type")] = None,
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> Page[DocumentView]:
        return list_documents(read, actor_of(request), doc_type, limit, offset)

    @post("/", sync_to_thread=True, status_code=201)
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

    @get("/{doc_id:uuid}", sync_to_thread=True)
    def get_item(
        self,
        request: Request[Any, Any, Any],
        read: Provided[ReadStore],
        history: Provided[EventHistory],
        doc_id: UUID,
        version: Annotated[int | None, Parameter(ge=1, description="A past version")] = None,
    ) -> Response[DocumentView]:
        actor = actor_of(request)
        if version is None:
            doc = get_document(read, str(doc_id), actor)
        else:
            doc = document_at(history, doc_id, version, actor)
        if doc is None:
            raise not_found("document" if version is None else f"document version {version}")
        return Response(doc, headers=etag(doc.version))

    @get("/{doc_id:uuid}/history", sync_to_thread=True)
    def history(
        self,
        request: Request[Any, Any, Any],
        history: Provided[EventHistory],
        doc_id: UUID,
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> Page[Revision]:
        revisions = document_history(history, doc_id, actor_of(request), limit, offset)
        if revisions is None:
            raise not_found("document")
        return revisions

    @put("/{doc_id:uuid}", sync_to_thread=True)
    def update_item(
        self,
        request: Request[Any, Any, Any],
        paper: Provided[PaperCommands],
        read: Provided[ReadStore],
        writes: Provided[Writes],
        doc_id: UUID,
        data: UpdateDocument,
    ) -> Response[DocumentView]:
        actor = actor_of(request)
        saved = paper.update(actor, doc_id, data, expected_version(request))
        return written(
            writes, saved, f"/api/paper/{doc_id}", lambda: get_document(read, str(doc_id), actor)
        )

    @delete("/{doc_id:uuid}", sync_to_thread=True, status_code=204)
    def delete_item(
        self,
        request: Request[Any, Any, Any],
        paper: Provided[PaperCommands],
        writes: Provided[Writes],
        doc_id: UUID,
    ) -> Response[None]:
        actor = actor_of(request)
        saved = paper.delete(actor, doc_id, expected_version(request))
        return written(writes, saved, f"/api/paper/{doc_id}", lambda: None)

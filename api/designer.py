"""Designer endpoints: a bot's dialogs, their validation, deploys and deployed versions.

Every authenticated user may read dialogs and validate them; only the bot's owners and admins
create, change, deploy and delete them (the first dialog of a bot makes its creator the owner;
`default` belongs to admins; api.bots).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, TypeVar
from uuid import UUID

import msgspec
from litestar import Controller, Request, Response, delete, get, post, put
from litestar.params import Parameter

from api.deps import Provided
from api.errors import ApiError, not_found
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
from commands.designer import (
    BOT_PATTERN,
    NAME_PATTERN,
    CreateDialog,
    DesignerCommands,
    UpdateDialog,
)
from domain.basic import Diagnostic
from domain.designer import DuplicateDialog, InvalidDialog
from projections.core import Page, ReadStore
from projections.designer import (
    DeployedSource,
    DeployedVersion,
    DialogFilter,
    DialogView,
    get_dialog,
    get_version,
    list_dialogs,
    list_versions,
)

T = TypeVar("T")

BASE = "/api/designer/dialogs"


class Finding(msgspec.Struct):
    line: int
    column: int
    message: str


class ValidationReport(msgspec.Struct):
    valid: bool
    errors: list[Finding]
    warnings: list[Finding]


def _findings(found: list[Diagnostic]) -> list[Finding]:
    return [Finding(d.line, d.column, d.message) for d in found]


@contextmanager
def _refusals() -> Iterator[None]:
    """The designer's own refusals, as the reference's statuses."""
    try:
        yield
    except DuplicateDialog as e:
        raise ApiError(409, str(e), [{"field": "name", "message": str(e)}]) from None
    except InvalidDialog as e:
        details = [msgspec.to_builtins(f) for f in _findings(e.report.errors)]
        raise ApiError(400, str(e), details) from None


def _refused(action: Callable[[], T]) -> T:
    with _refusals():
        return action()


class DesignerController(Controller):
    path = BASE
    tags = ["designer"]

    @get("/", sync_to_thread=True)
    def list_items(
        self,
        request: Request[Any, Any, Any],
        read: Provided[ReadStore],
        bot_id: Annotated[
            str | None, Parameter(pattern=BOT_PATTERN, max_length=100, description="A bot's id")
        ] = None,
        name: Annotated[
            str | None,
            Parameter(pattern=NAME_PATTERN, max_length=104, description="A dialog name"),
        ] = None,
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> Page[DialogView]:
        actor_of(request)
        return list_dialogs(read, DialogFilter(bot_id=bot_id, name=name), limit, offset)

    @post("/", sync_to_thread=True, status_code=201)
    def create_item(
        self,
        request: Request[Any, Any, Any],
        designer: Provided[DesignerCommands],
        read: Provided[ReadStore],
        writes: Provided[Writes],
        data: CreateDialog,
    ) -> Response[DialogView]:
        actor = actor_of(request)
        claim = claim_of(request, actor, data)
        return create(
            writes,
            "designer",
            lambda: _refused(lambda: designer.create(actor, data, claim)),
            lambda dialog_id: f"{BASE}/{dialog_id}",
            lambda dialog_id: get_dialog(read, dialog_id),
        )

    @get("/{dialog_id:uuid}", sync_to_thread=True)
    def get_item(
        self, request: Request[Any, Any, Any], read: Provided[ReadStore], dialog_id: UUID
    ) -> Response[DialogView]:
        actor_of(request)
        dialog = get_dialog(read, str(dialog_id))
        if dialog is None:
            raise not_found("dialog")
        return Response(dialog, headers=etag(dialog.version))

    @put("/{dialog_id:uuid}", sync_to_thread=True)
    def update_item(
        self,
        request: Request[Any, Any, Any],
        designer: Provided[DesignerCommands],
        read: Provided[ReadStore],
        writes: Provided[Writes],
        dialog_id: UUID,
        data: UpdateDialog,
    ) -> Response[DialogView]:
        actor = actor_of(request)
        with _refusals():
            saved = designer.update(actor, dialog_id, data, expected_version(request))
        return written(
            writes, saved, f"{BASE}/{dialog_id}", lambda: get_dialog(read, str(dialog_id))
        )

    @delete("/{dialog_id:uuid}", sync_to_thread=True, status_code=204)
    def delete_item(
        self,
        request: Request[Any, Any, Any],
        designer: Provided[DesignerCommands],
        writes: Provided[Writes],
        dialog_id: UUID,
    ) -> Response[None]:
        actor = actor_of(request)
        saved = designer.delete(actor, dialog_id, expected_version(request))
        return written(writes, saved, f"{BASE}/{dialog_id}", lambda: None)

    @post("/{dialog_id:uuid}/validate", sync_to_thread=True, status_code=200)
    def validate(
        self, request: Request[Any, Any, Any], designer: Provided[DesignerCommands], dialog_id: UUID
    ) -> ValidationReport:
        actor_of(request)
        report = designer.check(dialog_id)
        return ValidationReport(
            valid=report.valid,
            errors=_findings(report.errors),
            warnings=_findings(report.warnings),
        )

    @post("/{dialog_id:uuid}/deploy", sync_to_thread=True, status_code=201)
    def deploy(
        self,
        request: Request[Any, Any, Any],
        designer: Provided[DesignerCommands],
        read: Provided[ReadStore],
        writes: Provided[Writes],
        dialog_id: UUID,
    ) -> Response[DeployedVersion]:
        """Makes the draft the bot's live version N+1; a draft with errors is 400 with them."""
        actor = actor_of(request)
        claim = claim_of(request, actor, None)
        expected = expected_version(request)

        def render(version: str) -> DeployedVersion | None:
            found = get_version(read, str(dialog_id), int(version))
            return None if found is None else _summary(found)

        return create(
            writes,
            "designer",
            lambda: _refused(lambda: designer.deploy(actor, dialog_id, expected, claim)),
            lambda version: f"{BASE}/{dialog_id}/versions/{version}",
            render,
        )

    @get("/{dialog_id:uuid}/versions", sync_to_thread=True)
    def versions(
        self,
        request: Request[Any, Any, Any],
        read: Provided[ReadStore],
        dialog_id: UUID,
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> Page[DeployedVersion]:
        actor_of(request)
        found = list_versions(read, str(dialog_id), limit, offset)
        if found is None:
            raise not_found("dialog")
        return found

    @get("/{dialog_id:uuid}/versions/{version:int}", sync_to_thread=True)
    def version(
        self,
        request: Request[Any, Any, Any],
        read: Provided[ReadStore],
        dialog_id: UUID,
        version: Annotated[int, Parameter(ge=1, le=2**53 - 1, description="A deployed version")],
    ) -> Response[DeployedSource]:
        actor_of(request)
        found = get_version(read, str(dialog_id), version)
        if found is None:
            raise not_found(f"dialog version {version}")
        return Response(found, headers=etag(found.version))


def _summary(source: DeployedSource) -> DeployedVersion:
    return DeployedVersion(
        id=source.id,
        bot_id=source.bot_id,
        name=source.name,
        version=source.version,
        content_hash=source.content_hash,
        deployed_at=source.deployed_at,
        deployed_by=source.deployed_by,
    )

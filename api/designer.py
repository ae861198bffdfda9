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
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import Example
from litestar.params import Parameter

from api.deps import Provided
from api.errors import ApiError, ErrorEnvelope, not_found
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

DIALOG_ID = "0f853080-04a7-4e45-90b3-c3943b2c7baa"
SOURCE = 'TALK "Hello! What is your name?"\nHEAR name\nTALK "Nice to meet you, " + name + "!"'
DEPLOYED_AT = "2024-01-10T09:31:02.771828Z"
DIALOG = {
    "id": DIALOG_ID,
    "bot_id": "ana-bot",
    "name": "start",
    "content": SOURCE,
    "owner": ANA,
    "version": 1,
    "created_at": CREATED_AT,
    "updated_at": CREATED_AT,
    "updated_by": ANA,
    "deployed_version": None,
    "deployed_at": None,
    "deployed_by": None,
    "has_undeployed_changes": True,
}
DEPLOYED = {
    "id": DIALOG_ID,
    "bot_id": "ana-bot",
    "name": "start",
    "version": 1,
    "content_hash": "558d61fd7abf71480953d640d8580ec0fa66965053c2a9f6ac97cf87e7afcbdd",
    "deployed_at": DEPLOYED_AT,
    "deployed_by": ANA,
}
NEW_SOURCE = 'TALK "Hello! What is your name?"\nHEAR name\nTALK "Welcome, " + name + "!"'
EDITED = {
    **DIALOG,
    "content": NEW_SOURCE,
    "version": 3,
    "updated_at": UPDATED_AT,
    "deployed_version": 1,
    "deployed_at": DEPLOYED_AT,
    "deployed_by": ANA,
}
ONE_PAGE = {"total": 1, "limit": 50, "offset": 0, "has_more": False}
NOT_DEPLOYED = {
    "error": {
        "code": "BAD_REQUEST",
        "message": "the dialog has 2 errors and was not deployed; Line 1: unterminated string",
        "details": [
            {"line": 1, "column": 6, "message": "unterminated string"},
            {"line": 2, "column": 1, "message": "IF without END IF"},
        ],
    }
}

DialogId = Annotated[
    UUID,
    Parameter(
        description="The dialog's id, as its creation answered (`id`, and the `Location` header)",
        examples=[Example(summary="A dialog's id", value=DIALOG_ID)],
    ),
]
WHO_WRITES = (
    "Only the bot's owners and admins may (others `403`; `default` belongs to admins; see Bots)."
)


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
    tags = ["Designer"]

    @get(
        "/",
        sync_to_thread=True,
        operation_id="listDialogs",
        summary="List dialogs",
        description="Every bot's dialogs (any authenticated user may read them), by bot and"
        " name, each with its current source, its draft `version`, its `deployed_version` and"
        " whether the draft has `has_undeployed_changes`. The filters combine; `limit` and"
        " `offset` page through them.",
        response_description="A page of dialogs",
        operation_class=examples(
            response={"Ana's bot's start dialog": {"data": [EDITED], "pagination": ONE_PAGE}}
        ),
    )
    def list_items(
        self,
        request: Request[Any, Any, Any],
        read: Provided[ReadStore],
        bot_id: Annotated[
            str | None,
            Parameter(
                pattern=BOT_PATTERN,
                max_length=100,
                description="A bot's id; only that bot's dialogs are listed",
                examples=[Example(summary="Ana's bot", value="ana-bot")],
            ),
        ] = None,
        name: Annotated[
            str | None,
            Parameter(
                pattern=NAME_PATTERN,
                max_length=104,
                description="A dialog name; only dialogs of that name are listed (compared"
                " without regard to case, a `.bas` suffix dropped)",
                examples=[Example(summary="The start dialogs", value="start")],
            ),
        ] = None,
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> Page[DialogView]:
        actor_of(request)
        return list_dialogs(read, DialogFilter(bot_id=bot_id, name=name), limit, offset)

    @post(
        "/",
        sync_to_thread=True,
        status_code=201,
        operation_id="createDialog",
        summary="Create a dialog",
        description="Creates a draft dialog for the bot `bot_id` (default `default`), named"
        " like its `.bas` file (`greeting.bas` is `greeting`), with its BASIC source (up to"
        " 200,000 characters; the language is in docs/dialogs.md). A bot has one dialog per"
        " name, without regard to case: a second is `409`. The first dialog of a bot makes"
        f" you its owner; after that, {WHO_WRITES[0].lower()}{WHO_WRITES[1:]} A draft does"
        " not run until it is deployed (`POST .../deploy`); the `start` dialog runs on a"
        " session's first message. Answers `201` with the dialog, its `Location` and its"
        f" `ETag`. {IDEMPOTENT} {LAGGING}",
        response_description="The dialog created",
        operation_class=examples(
            request={
                "A start dialog for Ana's bot": {
                    "name": "start",
                    "bot_id": "ana-bot",
                    "content": SOURCE,
                },
            },
            response={"The draft created": DIALOG},
        ),
    )
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

    @get(
        "/{dialog_id:uuid}",
        sync_to_thread=True,
        operation_id="getDialog",
        summary="Get a dialog",
        description="The dialog's current draft with its `ETag` (send it back in `If-Match`"
        " to change, delete or deploy it safely) and its deployment state. Any authenticated"
        " user may read it.",
        response_description="The dialog",
        operation_class=examples(response={"A draft never deployed": DIALOG}),
    )
    def get_item(
        self, request: Request[Any, Any, Any], read: Provided[ReadStore], dialog_id: DialogId
    ) -> Response[DialogView]:
        actor_of(request)
        dialog = get_dialog(read, str(dialog_id))
        if dialog is None:
            raise not_found("dialog")
        return Response(dialog, headers=etag(dialog.version))

    @put(
        "/{dialog_id:uuid}",
        sync_to_thread=True,
        operation_id="updateDialog",
        summary="Change a dialog's draft",
        description="Changes the draft's `content` and/or renames it (`name`; a name the bot"
        " already has is `409`). The deployed version keeps running until the next deploy:"
        f" the answer shows `has_undeployed_changes`. {WHO_WRITES}"
        f" {CONDITIONAL.format(thing='dialog')} {LAGGING}",
        response_description="The dialog as changed",
        operation_class=examples(
            request={"A new greeting": {"content": NEW_SOURCE}},
            response={"Changed after its first deploy": EDITED},
        ),
    )
    def update_item(
        self,
        request: Request[Any, Any, Any],
        designer: Provided[DesignerCommands],
        read: Provided[ReadStore],
        writes: Provided[Writes],
        dialog_id: DialogId,
        data: UpdateDialog,
    ) -> Response[DialogView]:
        actor = actor_of(request)
        with _refusals():
            saved = designer.update(actor, dialog_id, data, expected_version(request))
        return written(
            writes, saved, f"{BASE}/{dialog_id}", lambda: get_dialog(read, str(dialog_id))
        )

    @delete(
        "/{dialog_id:uuid}",
        sync_to_thread=True,
        status_code=204,
        operation_id="deleteDialog",
        summary="Delete a dialog",
        description="Deletes the dialog and frees its name; conversations already running it"
        f" finish on the version they started. {WHO_WRITES} Answers `204` with no body."
        f" {CONDITIONAL.format(thing='dialog')} {LAGGING}",
        response_description="Deleted",
    )
    def delete_item(
        self,
        request: Request[Any, Any, Any],
        designer: Provided[DesignerCommands],
        writes: Provided[Writes],
        dialog_id: DialogId,
    ) -> Response[None]:
        actor = actor_of(request)
        saved = designer.delete(actor, dialog_id, expected_version(request))
        return written(writes, saved, f"{BASE}/{dialog_id}", lambda: None)

    @post(
        "/{dialog_id:uuid}/validate",
        sync_to_thread=True,
        status_code=200,
        operation_id="validateDialog",
        summary="Check a dialog's draft",
        description="Parses and checks the current draft without deploying it: `valid` is"
        " false when there are `errors` (a deploy would refuse them); `warnings` point at"
        " likely mistakes. Each finding has its `line`, `column` and `message`; `CALL"
        ' "x.bas"` is checked against the bot\'s dialogs. Takes no body, changes nothing;'
        " any authenticated user may.",
        response_description="The findings",
        operation_class=examples(
            response={
                "A valid dialog": {"valid": True, "errors": [], "warnings": []},
                "Errors and a warning": {
                    "valid": False,
                    "errors": [
                        {"line": 1, "column": 6, "message": "unterminated string"},
                        {"line": 2, "column": 1, "message": "IF without END IF"},
                    ],
                    "warnings": [
                        {
                            "line": 2,
                            "column": 4,
                            "message": "variable x is read before any assignment",
                        }
                    ],
                },
            }
        ),
    )
    def validate(
        self,
        request: Request[Any, Any, Any],
        designer: Provided[DesignerCommands],
        dialog_id: DialogId,
    ) -> ValidationReport:
        actor_of(request)
        report = designer.check(dialog_id)
        return ValidationReport(
            valid=report.valid,
            errors=_findings(report.errors),
            warnings=_findings(report.warnings),
        )

    @post(
        "/{dialog_id:uuid}/deploy",
        sync_to_thread=True,
        status_code=201,
        operation_id="deployDialog",
        summary="Deploy a dialog",
        description="Makes the current draft the bot's live version N+1 (1, 2, ...): new"
        " conversations run it, and its exact source stays readable at"
        " `GET .../versions/{version}`. A draft with errors is `400` with them as `details`"
        f" (nothing deployed). Takes no body. {WHO_WRITES}"
        f" {CONDITIONAL.format(thing='dialog')} {IDEMPOTENT} Answers `201` with the version"
        f" and its `Location`. {LAGGING}",
        response_description="The version deployed",
        operation_class=examples(response={"Its first version": DEPLOYED}),
        responses={
            400: ResponseSpec(
                ErrorEnvelope,
                description="The draft has errors (as `details`, like validate's), or a"
                " malformed header",
                examples=[Example(summary="A draft with two errors", value=NOT_DEPLOYED)],
            )
        },
    )
    def deploy(
        self,
        request: Request[Any, Any, Any],
        designer: Provided[DesignerCommands],
        read: Provided[ReadStore],
        writes: Provided[Writes],
        dialog_id: DialogId,
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

    @get(
        "/{dialog_id:uuid}/versions",
        sync_to_thread=True,
        operation_id="listDialogVersions",
        summary="List a dialog's deployed versions",
        description="Every version deployed from this dialog, oldest first, without sources"
        " (`GET .../versions/{version}` has each one's). Any authenticated user may read them.",
        response_description="A page of deployed versions",
        operation_class=examples(
            response={"Deployed once": {"data": [DEPLOYED], "pagination": ONE_PAGE}}
        ),
    )
    def versions(
        self,
        request: Request[Any, Any, Any],
        read: Provided[ReadStore],
        dialog_id: DialogId,
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> Page[DeployedVersion]:
        actor_of(request)
        found = list_versions(read, str(dialog_id), limit, offset)
        if found is None:
            raise not_found("dialog")
        return found

    @get(
        "/{dialog_id:uuid}/versions/{version:int}",
        sync_to_thread=True,
        operation_id="getDialogVersion",
        summary="Get a deployed version's source",
        description="The exact source deployed as this version, as conversations run it, with"
        " the hash of that source. A version never deployed is `404`. Any authenticated user"
        " may read it.",
        response_description="The deployed version, with its source",
        operation_class=examples(response={"Version 1": {**DEPLOYED, "content": SOURCE}}),
    )
    def version(
        self,
        request: Request[Any, Any, Any],
        read: Provided[ReadStore],
        dialog_id: DialogId,
        version: Annotated[
            int,
            Parameter(
                ge=1,
                le=2**53 - 1,
                description="A deployed version (1 for the first deploy)",
                examples=[Example(summary="The first deploy", value=1)],
            ),
        ],
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

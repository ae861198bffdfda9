"""The server's areas, one record each: its controllers, its projections and the store they
live in, the named dependencies its controllers use, and its dialog keywords.

The composition root (infra/bootstrap.py) loops over `AREAS`: the projections it runs and
tracks, the route handlers the app serves, and the dependencies handlers get by name
(api.deps.Provided). A new area is its own files plus one line in `AREAS`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from litestar.types import ControllerRouterHandler

from api.admin import AdminController, health
from api.auth import Authenticator
from api.bots import BotsController
from api.designer import DesignerController
from api.drive import DriveController
from api.http import Writes
from api.kb import KbController
from api.mail import EmailController
from api.mail_accounts import EmailAccountsController
from api.paper import PaperController
from api.sessions import SessionsController
from api.tasks import TasksController
from commands.admin import AdminCommands
from commands.bots import BotCommands
from commands.designer import DesignerCommands
from commands.drive import DialogDriveKeywords, DriveCommands
from commands.kb import DialogKnowledge, KbCommands, KnowledgeBase
from commands.mail import DialogMail, MailCommands
from commands.mail_accounts import MailAccountCommands
from commands.paper import PaperCommands
from commands.ports import BlobStore
from commands.sessions import Deployed, SessionCommands
from commands.tasks import DialogTasks, TaskCommands
from commands.turn import KeywordProvider, TurnLimits
from domain.basic.platform import DRIVE, EMAIL, KB, TASKS
from infra.config import Settings
from infra.eventstore import EventStoreAdapter
from infra.imap import imap_workers
from infra.kb_worker import kb_workers
from infra.llm import ChatCompletions
from infra.mailer import mail_listeners, mail_workers
from infra.metrics import Metrics
from infra.monitoring import EventLog, Monitoring
from infra.operations import ProjectionOps
from infra.readstore import PostgresReadStore, SQLiteReadStore
from infra.runner import Consistency
from infra.secrets import FernetSecrets
from infra.worker import Worker
from projections.admin import TokensProjection
from projections.bots import BotsProjection
from projections.core import Projection, ReadStore
from projections.designer import (
    DeployedSource,
    DesignerProjection,
    deployed_source,
    dialog_names,
    dialog_source,
    live_dialog,
)
from projections.drive import DriveProjection, DriveReadModel
from projections.kb import KbProjection
from projections.mail import DriveAttachments, MailDirectory, MailProjection
from projections.mail_accounts import MailAccountsProjection
from projections.paper import PaperProjection
from projections.sessions import SessionsProjection
from projections.tasks import TasksProjection

# The stores a projection may live in (only the SQL read store so far); tracking, rebuilds
# and the admin API treat the projections of every store the same.
Store = Literal["sql"]


@dataclass(frozen=True)
class AreaContext:
    """What the areas' factories build their dependencies from (Services.context())."""

    settings: Settings
    events: EventStoreAdapter
    read: SQLiteReadStore | PostgresReadStore
    consistency: Consistency
    authenticator: Authenticator
    llm: ChatCompletions | None
    monitoring: Monitoring
    operations: ProjectionOps
    metrics: Metrics
    blobs: BlobStore
    kb: KnowledgeBase


Keywords = Mapping[str, KeywordProvider]


def _nothing(_: AreaContext) -> Mapping[str, object]:
    return {}


def _no_workers(_: AreaContext) -> Sequence[Worker]:
    return ()


@dataclass(frozen=True)
class Area:
    name: str
    controllers: tuple[ControllerRouterHandler, ...] = ()
    projections: tuple[type[Projection], ...] = ()
    store: Store = "sql"  # where the projections live
    # The named dependencies the area's controllers use (a name is provided by one area).
    provides: Callable[[AreaContext], Mapping[str, object]] = _nothing
    # The dialog keywords the area provides: area name (domain.basic.platform.AREAS) ->
    # provider, or a factory of that mapping for providers built from the AreaContext.
    keywords: Keywords | Callable[[AreaContext], Keywords] = field(default_factory=dict)
    # Background workers of the area (mail delivery, IMAP sync), run beside the projections
    # (`serve` without --no-workers, `project`). One that must run in one process at a time
    # takes a lock of infra.locks.
    workers: Callable[[AreaContext], Sequence[Worker]] = _no_workers
    # Servers of protocols other than HTTP (the SMTP listener), run by `serve` (with or
    # without --no-workers) and by nothing else: they are how the outside reaches the area.
    listeners: Callable[[AreaContext], Sequence[Worker]] = _no_workers


class DesignerCatalog:
    """The sessions' view of deployed dialogs (commands.sessions.DialogCatalog)."""

    def __init__(self, read: ReadStore) -> None:
        self.read = read

    def live(self, bot_id: str, name: str) -> Deployed | None:
        return _deployed(live_dialog(self.read, bot_id, name))

    def source(self, bot_id: str, name: str, version: int) -> Deployed | None:
        return _deployed(dialog_source(self.read, bot_id, name, version))

    def exact(self, dialog_id: str, version: int) -> Deployed | None:
        return _deployed(deployed_source(self.read, dialog_id, version))


def _deployed(found: DeployedSource | None) -> Deployed | None:
    return None if found is None else Deployed(found.id, found.version, found.content)


def _core(ctx: AreaContext) -> Mapping[str, object]:
    return {
        "read": ctx.read,
        "writes": Writes(ctx.consistency, ctx.settings.consistency_timeout, ctx.metrics),
        "authenticator": ctx.authenticator,
        "monitoring": ctx.monitoring,
    }


def _designer(ctx: AreaContext) -> Mapping[str, object]:
    # No GB_HTTP_ALLOW yet: HTTP keywords validate with a warning that they are off.
    return {
        "designer": DesignerCommands(
            ctx.events, lambda bot_id: dialog_names(ctx.read, bot_id), http_allowed=False
        )
    }


def _sessions(ctx: AreaContext) -> Mapping[str, object]:
    s = ctx.settings
    return {
        "sessions": SessionCommands(
            ctx.events,
            DesignerCatalog(ctx.read),
            ctx.llm,
            limits=TurnLimits(
                max_state_bytes=s.turn_max_state_bytes,
                max_value_bytes=s.turn_max_value_bytes,
                max_event_bytes=s.turn_max_event_bytes,
                max_calls=s.turn_max_calls,
                seconds=s.turn_seconds,
            ),
            keywords=dialog_keywords(AREAS, ctx),
            knowledge=ctx.kb,
        )
    }


def dialog_keywords(areas: Iterable[Area], ctx: AreaContext) -> dict[str, KeywordProvider]:
    """The interpreter's platform, by area: every area's keyword providers (those an area
    builds from the context, such as the drive's, built from `ctx`)."""
    found: dict[str, KeywordProvider] = {}
    for area in areas:
        provided = area.keywords(ctx) if callable(area.keywords) else area.keywords
        for name, provider in provided.items():
            if name in found:
                raise ValueError(f"two areas provide the {name} keywords")
            found[name] = provider
    return found


def mail_commands(ctx: AreaContext) -> MailCommands:
    """The mail area's commands (the API's, SEND MAIL's and the mail workers')."""
    s = ctx.settings
    return MailCommands(
        ctx.events,
        ctx.blobs,
        MailDirectory(ctx.read),
        relay=bool(s.smtp_host),
        max_mail_bytes=s.max_mail_mb * 1024 * 1024,
        drive=DriveAttachments(ctx.read),
    )


def _admin(ctx: AreaContext) -> Mapping[str, object]:
    return {
        "admin": AdminCommands(ctx.events),
        "operations": ctx.operations,
        "event_log": EventLog(ctx.events),
    }


AREAS: tuple[Area, ...] = (
    Area("core", controllers=(health,), provides=_core),
    Area(
        "tasks",
        controllers=(TasksController,),
        projections=(TasksProjection,),
        provides=lambda ctx: {"tasks": TaskCommands(ctx.events)},
        keywords={TASKS: DialogTasks},  # CREATE TASK
    ),
    Area(
        "paper",
        controllers=(PaperController,),
        projections=(PaperProjection,),
        provides=lambda ctx: {"paper": PaperCommands(ctx.events), "history": ctx.events},
    ),
    Area(
        "designer",
        controllers=(DesignerController,),
        projections=(DesignerProjection,),
        provides=_designer,
    ),
    Area(
        "bots",
        controllers=(BotsController,),
        projections=(BotsProjection,),
        provides=lambda ctx: {"bots": BotCommands(ctx.events)},
    ),
    Area(
        "sessions",
        controllers=(SessionsController,),
        projections=(SessionsProjection,),
        provides=_sessions,
    ),
    Area(
        "drive",
        controllers=(DriveController,),
        projections=(DriveProjection,),
        provides=lambda ctx: {
            "drive": DriveCommands(
                ctx.events,
                ctx.blobs,
                DriveReadModel(ctx.read),
                ctx.settings.max_upload_mb * 1024 * 1024,
            )
        },
        keywords=lambda ctx: {DRIVE: DialogDriveKeywords(ctx.blobs, DriveReadModel(ctx.read))},
    ),
    Area(
        "mail",
        controllers=(EmailController,),
        projections=(MailProjection,),
        provides=lambda ctx: {"mail": mail_commands(ctx)},
        keywords=lambda ctx: {EMAIL: DialogMail.provider(mail_commands(ctx))},  # SEND MAIL
        workers=lambda ctx: mail_workers(ctx, mail_commands(ctx)),  # delivery
        listeners=lambda ctx: mail_listeners(ctx, mail_commands(ctx)),  # GB_SMTP_LISTEN
    ),
    # IMAP accounts: their passwords kept encrypted, their new messages synced into inboxes.
    Area(
        "mail_accounts",
        controllers=(EmailAccountsController,),
        projections=(MailAccountsProjection,),
        provides=lambda ctx: {
            "mail_accounts": MailAccountCommands(ctx.events, FernetSecrets(ctx.settings))
        },
        workers=lambda ctx: imap_workers(ctx, mail_commands(ctx)),  # the IMAP sync
    ),
    # Knowledge base: collections are drive folders of bot packages, indexed in the background.
    Area(
        "kb",
        controllers=(KbController,),
        projections=(KbProjection,),
        provides=lambda ctx: {"kb": ctx.kb, "kb_commands": KbCommands(ctx.events)},
        keywords=lambda ctx: {KB: lambda turn: DialogKnowledge(ctx.kb, turn)},  # USE KB...
        workers=kb_workers,  # ingestion
    ),
    # Tokens, projections (state, rebuilds, dead letters), the event log and stats.
    Area(
        "admin",
        controllers=(AdminController,),
        projections=(TokensProjection,),
        provides=_admin,
    ),
)


def projections(areas: Iterable[Area]) -> tuple[type[Projection], ...]:
    return tuple(p for area in areas for p in area.projections)


def open_projections(
    areas: Iterable[Area], stores: Mapping[Store, ReadStore]
) -> dict[str, Projection]:
    """Each area's projections, each on its area's store, by name."""
    return {p.name: p(stores[area.store]) for area in areas for p in area.projections}


def area_workers(areas: Iterable[Area], ctx: AreaContext) -> list[Worker]:
    return [worker for area in areas for worker in area.workers(ctx)]


def area_listeners(areas: Iterable[Area], ctx: AreaContext) -> list[Worker]:
    return [listener for area in areas for listener in area.listeners(ctx)]


def route_handlers(areas: Iterable[Area]) -> list[ControllerRouterHandler]:
    return [handler for area in areas for handler in area.controllers]


def dependencies(areas: Iterable[Area], ctx: AreaContext) -> dict[str, object]:
    """Every area's named dependencies; two areas providing one name is a wiring error."""
    provided: dict[str, object] = {}
    owners: dict[str, str] = {}
    for area in areas:
        for name, value in area.provides(ctx).items():
            if name in owners:
                raise ValueError(f"areas {owners[name]!r} and {area.name!r} both provide {name!r}")
            owners[name] = area.name
            provided[name] = value
    return provided

"""Bots endpoints: the bots a user owns, and each bot's owners.

Creating the first dialog of a bot makes its creator the owner (api.designer); only owners
and admins write a bot's dialogs and see or replace its owners; `default` belongs to admins.
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, get, put
from litestar.openapi.spec import Example
from litestar.params import Parameter

from api.deps import Provided
from api.errors import not_found
from api.examples import ANA, BEA, CONDITIONAL, CREATED_AT, LAGGING, examples
from api.http import Limit, Offset, Writes, actor_of, etag, expected_version, written
from commands.bots import BotCommands, SetOwners
from commands.designer import BOT_PATTERN
from projections.bots import BotOwners, BotView, bot_owners, get_owners, list_bots
from projections.core import Page, ReadStore

BASE = "/api/bots"

BotIdParam = Annotated[
    str,
    Parameter(
        min_length=1,
        max_length=100,
        pattern=BOT_PATTERN,
        description="A bot's id: letters, digits, '_', '-' and '.'",
        examples=[Example(summary="Ana's bot", value="ana-bot")],
    ),
]
OWNERS = {"bot_id": "ana-bot", "owners": [ANA], "version": 1}


class BotsController(Controller):
    path = BASE
    tags = ["Bots"]

    @get(
        "/",
        sync_to_thread=True,
        operation_id="listBots",
        summary="List your bots",
        description="The bots you own (an admin: every bot that has owners), by id, with"
        " their owners and how many dialogs they have. A bot exists once its first dialog is"
        " created (its creator becomes the owner) or an admin sets its owners.",
        response_description="A page of bots",
        operation_class=examples(
            response={
                "Ana's bot": {
                    "data": [
                        {
                            "id": "ana-bot",
                            "owners": [ANA],
                            "dialogs": 1,
                            "created_at": CREATED_AT,
                            "created_by": ANA,
                            "updated_at": CREATED_AT,
                            "updated_by": ANA,
                            "version": 1,
                        }
                    ],
                    "pagination": {"total": 1, "limit": 50, "offset": 0, "has_more": False},
                }
            }
        ),
    )
    def list_items(
        self,
        request: Request[Any, Any, Any],
        read: Provided[ReadStore],
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> Page[BotView]:
        """The bots you own (an admin: every bot that has owners), by id."""
        return list_bots(read, actor_of(request), limit, offset)

    @get(
        "/{bot_id:str}/owners",
        sync_to_thread=True,
        operation_id="getBotOwners",
        summary="Get a bot's owners",
        description="The bot's owners (the users who may create, change, deploy and delete its"
        " dialogs), with the list's version as `ETag`. Only its owners and admins may see"
        " them (others `403`); a bot nobody owns yet is `404`.",
        response_description="The bot's owners",
        operation_class=examples(response={"Owned by Ana": OWNERS}),
    )
    def get_owners(
        self, request: Request[Any, Any, Any], read: Provided[ReadStore], bot_id: BotIdParam
    ) -> Response[BotOwners]:
        found = get_owners(read, bot_id, actor_of(request))
        if found is None:
            raise not_found(f"bot {bot_id}")
        return Response(found, headers=etag(found.version))

    @put(
        "/{bot_id:str}/owners",
        sync_to_thread=True,
        operation_id="setBotOwners",
        summary="Replace a bot's owners",
        description="Replaces the owner list (at least one email; you may leave it, and you"
        " still get the answer). Owners and admins may; for `default`, admins only (others"
        " `403`). An admin may also set the owners of a bot nobody owns yet; for anyone else"
        f" that bot is `404`. {CONDITIONAL.format(thing='owner list')} {LAGGING}",
        response_description="The new owners",
        operation_class=examples(
            request={"Ana and Bea": {"owners": [ANA, BEA]}},
            response={"Now two owners": {"bot_id": "ana-bot", "owners": [ANA, BEA], "version": 2}},
        ),
    )
    def set_owners(
        self,
        request: Request[Any, Any, Any],
        bots: Provided[BotCommands],
        read: Provided[ReadStore],
        writes: Provided[Writes],
        bot_id: BotIdParam,
        data: SetOwners,
    ) -> Response[BotOwners]:
        """Replaces the owners (at least one). An admin may also set the owners of a bot
        nobody has claimed yet; `default`'s owners are set by admins only."""
        actor = actor_of(request)
        saved = bots.set_owners(actor, bot_id, data, expected_version(request))
        # Whoever just set the owners sees them, even having left the list.
        return written(writes, saved, f"{BASE}/{bot_id}/owners", lambda: bot_owners(read, bot_id))

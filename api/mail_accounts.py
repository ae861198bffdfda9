"""IMAP accounts: connect a mailbox elsewhere; its new messages arrive in your inbox.

The password is taken once, kept encrypted, and never part of an answer.
"""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from litestar import Controller, Request, Response, delete, get, post
from litestar.openapi.spec import Example
from litestar.params import Parameter

from api.deps import Provided
from api.errors import not_found
from api.examples import ANA, CREATED_AT, IDEMPOTENT, LAGGING, UPDATED_AT, examples
from api.http import Limit, Offset, Writes, actor_of, claim_of, create, written
from commands.mail_accounts import ConnectAccount, MailAccountCommands
from projections.core import Page, ReadStore
from projections.mail_accounts import AccountView, get_account, list_accounts

ACCOUNT_ID = "0b6a3c1e-5d0f-5b7e-9a51-2f4c8d7e6a10"
PENDING = {
    "id": ACCOUNT_ID,
    "host": "imap.example.com",
    "port": 993,
    "security": "tls",
    "username": ANA,
    "folder": "INBOX",
    "status": "pending",
    "last_error": None,
    "last_error_at": None,
    "imported": 0,
    "skipped": 0,
    "uidvalidity": None,
    "last_uid": 0,
    "connected_at": CREATED_AT,
    "updated_at": CREATED_AT,
}
SYNCED = {
    **PENDING,
    "status": "ok",
    "imported": 42,
    "uidvalidity": 1700000000,
    "last_uid": 42,
    "updated_at": UPDATED_AT,
}
FAILING = {
    **PENDING,
    "status": "error",
    "last_error": "login refused: [AUTHENTICATIONFAILED] Authentication failed.",
    "last_error_at": UPDATED_AT,
    "updated_at": UPDATED_AT,
}

AccountId = Annotated[
    UUID,
    Parameter(
        description="The account's id, as connecting it answered (`id`, `Location`)",
        examples=[Example(summary="An account's id", value=ACCOUNT_ID)],
    ),
]
STATE = (
    "`status` is `pending` until the first sync, `ok` once synced, `error` when the last"
    " sync failed (`last_error` says why: a wrong password, a host out of reach...; it is"
    " retried, less often while it keeps failing). `imported` counts the messages brought"
    " in, `skipped` those over `GB_MAX_MAIL_MB`; `uidvalidity` and `last_uid` are the"
    " position in the folder."
)
OWN = "Accounts are their owner's alone: another user's (an admin's too) is `404`."


class EmailAccountsController(Controller):
    path = "/api/email/accounts"
    tags = ["Email"]

    @get(
        "/",
        sync_to_thread=True,
        operation_id="listEmailAccounts",
        summary="List your IMAP accounts",
        description="The IMAP accounts you connected, the most recently connected first, each"
        f" with its sync state (never its password). {STATE}",
        response_description="A page of accounts",
        operation_class=examples(
            response={
                "One synced account": {
                    "data": [SYNCED],
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
    ) -> Page[AccountView]:
        return list_accounts(read, actor_of(request).email, limit, offset)

    @post(
        "/",
        sync_to_thread=True,
        status_code=201,
        operation_id="connectEmailAccount",
        summary="Connect an IMAP account",
        description="Connects a mailbox on an IMAP server: `host`, `security` (`tls`, the"
        " default; `starttls`; `none`), `port` (default 993 for `tls`, else 143), `username`,"
        " `password` and the `folder` to import (default `INBOX`). The server checks it soon"
        " after, then every `GB_IMAP_POLL_SECONDS`, and brings each new message into your"
        " `inbox` exactly once (by its UID), across restarts. The password is stored"
        " encrypted and never shown again. Connecting a mailbox (host, user name, folder)"
        " already connected is `409`; one removed before is connected again where it left"
        " off (nothing imported twice). A wrong password or an unreachable host is no error"
        f" here: the account shows it (`status`). {IDEMPOTENT} {LAGGING}",
        response_description="The account connected",
        operation_class=examples(
            request={
                "An IMAPS mailbox": {
                    "host": "imap.example.com",
                    "security": "tls",
                    "username": ANA,
                    "password": "app-password-1",
                },
                "Another folder over STARTTLS": {
                    "host": "mail.example.org",
                    "port": 143,
                    "security": "starttls",
                    "username": "ana",
                    "password": "app-password-2",
                    "folder": "Archive",
                },
            },
            response={"The account connected": PENDING},
        ),
    )
    def create_item(
        self,
        request: Request[Any, Any, Any],
        mail_accounts: Provided[MailAccountCommands],
        read: Provided[ReadStore],
        writes: Provided[Writes],
        data: ConnectAccount,
    ) -> Response[AccountView]:
        actor = actor_of(request)
        claim = claim_of(request, actor, data)
        return create(
            writes,
            "mail_accounts",
            lambda: mail_accounts.connect(actor, data, claim),
            lambda account_id: f"/api/email/accounts/{account_id}",
            lambda account_id: get_account(read, account_id, actor.email),
        )

    @get(
        "/{account_id:uuid}",
        sync_to_thread=True,
        operation_id="getEmailAccount",
        summary="Get an IMAP account",
        description=f"The account and its sync state (never its password). {STATE} {OWN}",
        response_description="The account",
        operation_class=examples(
            response={"A synced account": SYNCED, "An account that fails": FAILING}
        ),
    )
    def get_item(
        self,
        request: Request[Any, Any, Any],
        read: Provided[ReadStore],
        account_id: AccountId,
    ) -> AccountView:
        account = get_account(read, str(account_id), actor_of(request).email)
        if account is None:
            raise not_found("IMAP account")
        return account

    @delete(
        "/{account_id:uuid}",
        sync_to_thread=True,
        status_code=204,
        operation_id="removeEmailAccount",
        summary="Remove an IMAP account",
        description="Stops syncing the account; the messages it"
        " brought in stay in your mailbox. Connecting the same mailbox again later goes on"
        f" from where it stopped. Answers `204` with no body. {OWN} {LAGGING}",
        response_description="Removed",
    )
    def delete_item(
        self,
        request: Request[Any, Any, Any],
        mail_accounts: Provided[MailAccountCommands],
        writes: Provided[Writes],
        account_id: AccountId,
    ) -> Response[None]:
        saved = mail_accounts.remove(actor_of(request), account_id)
        return written(writes, saved, f"/api/email/accounts/{account_id}", lambda: None)

"""Admin: API tokens. Only a token's hash is ever recorded."""

from __future__ import annotations

from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.common import Gone

ROLES = ("admin", "user")


class ApiToken(Aggregate):
    TOPIC = "gbserver.admin.ApiToken"

    class Created(Aggregate.Created):
        TOPIC = "gbserver.admin.ApiToken.Created"

    @event("TokenIssued", topic="gbserver.admin.TokenIssued")
    def __init__(
        self, user: str, role: str, token_hash: str, issued_by: str, id: UUID | None = None
    ) -> None:
        self.user = user
        self.role = role
        self.token_hash = token_hash
        self.issued_by = issued_by
        self.revoked = False

    def revoke(self, actor: str) -> None:
        if self.revoked:
            raise Gone(f"token {self.id} was already revoked")
        self._revoked(actor=actor)

    @event("TokenRevoked", topic="gbserver.admin.TokenRevoked")
    def _revoked(self, actor: str) -> None:
        self.revoked = True

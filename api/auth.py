"""Bearer-token authentication: token hash -> actor, through a cache, from the event store."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any, Protocol

import anyio
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult

from commands.admin import BOOTSTRAP_USER, hash_token
from domain.admin import ApiToken
from domain.common import Actor
from projections.admin import find_active_token
from projections.core import ReadStore

# Routes answered without a token: regular expressions searched in the request's path
# (Litestar's `exclude`), so each is anchored.
PUBLIC_PATHS = (r"^/$", r"^/api/health/?$", r"^/schema(/|$)", r"^/docs(/|$)")


# A token by its hash, read where it was written (commands.admin.AdminCommands.token_by_hash).
TokenSource = Callable[[str], ApiToken | None]


class ActorCache(Protocol):
    def get(self, key: str) -> Actor | None: ...

    def put(self, key: str, value: Actor) -> None: ...

    def clear(self) -> None: ...


class Authenticator:
    """Token -> actor in constant time, whatever the token: the configured admin secret, then
    the cache, then the token read by id from the event store (`TokenSource`), then, for
    tokens issued before ids derived from hashes, the tokens read model. Nothing waits for a
    projection: an unknown or revoked token costs the same few indexed reads as a good one."""

    def __init__(
        self,
        read: ReadStore,
        cache: ActorCache,
        admin_secret: str,
        tokens: TokenSource,
    ) -> None:
        self._read = read
        self._cache = cache
        self._admin_hash = hash_token(admin_secret) if admin_secret else ""
        self._tokens = tokens

    def cached(self, secret: str) -> Actor | None:
        digest = hash_token(secret)
        if self._admin_hash and hmac.compare_digest(digest, self._admin_hash):
            return Actor(BOOTSTRAP_USER, is_admin=True)
        return self._cache.get(digest)

    def lookup(self, secret: str) -> Actor | None:
        """The token's actor, None when it is unknown or revoked."""
        digest = hash_token(secret)
        token = self._tokens(digest)
        if token is not None:
            if token.revoked:
                return None  # the log says so, whatever the read model has seen yet
            actor = Actor(token.user, is_admin=token.role == "admin")
        else:
            view = find_active_token(self._read, digest)  # a token with a random id
            if view is None:
                return None
            actor = Actor(view.user, is_admin=view.role == "admin")
        self._cache.put(digest, actor)
        return actor

    def forget_all(self) -> None:
        self._cache.clear()


class TokenAuthMiddleware(AbstractAuthenticationMiddleware):
    def __init__(self, app: Any, authenticator: Authenticator, **kwargs: Any) -> None:
        super().__init__(app, exclude=list(PUBLIC_PATHS), **kwargs)
        self.authenticator = authenticator

    async def authenticate_request(
        self, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> AuthenticationResult:
        header = connection.headers.get("authorization", "")
        scheme, _, secret = header.partition(" ")
        secret = secret.strip()
        if scheme.lower() != "bearer" or not secret or len(secret) > 512:
            raise NotAuthorizedException(
                "missing or malformed bearer token", headers={"WWW-Authenticate": "Bearer"}
            )
        actor = self.authenticator.cached(secret)
        if actor is None:
            actor = await anyio.to_thread.run_sync(self.authenticator.lookup, secret)
        if actor is None:
            raise NotAuthorizedException(
                "invalid or revoked token", headers={"WWW-Authenticate": "Bearer"}
            )
        return AuthenticationResult(user=actor, auth=secret)


def admin_only(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    if connection.scope.get("method") == "OPTIONS":
        return  # preflight: unauthenticated by design, answers only the allowed methods
    actor = connection.scope.get("user")
    if not isinstance(actor, Actor) or not actor.is_admin:
        raise PermissionDeniedException("admin role required")

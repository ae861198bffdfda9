"""Bearer-token authentication: token hash -> actor, through a cache, from the tokens read model."""

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
from domain.common import Actor
from projections.admin import TokenView, find_active_token
from projections.core import ReadStore

PUBLIC_PATHS = ("/api/health", "/schema")


class ActorCache(Protocol):
    def get(self, key: str) -> Actor | None: ...

    def put(self, key: str, value: Actor) -> None: ...

    def clear(self) -> None: ...


class Authenticator:
    def __init__(
        self,
        read: ReadStore,
        cache: ActorCache,
        admin_secret: str,
        find: Callable[[Callable[[], TokenView | None]], TokenView | None],
    ) -> None:
        self._read = read
        self._cache = cache
        self._admin_hash = hash_token(admin_secret) if admin_secret else ""
        self._find = find

    def cached(self, secret: str) -> Actor | None:
        digest = hash_token(secret)
        if self._admin_hash and hmac.compare_digest(digest, self._admin_hash):
            return Actor(BOOTSTRAP_USER, is_admin=True)
        return self._cache.get(digest)

    def lookup(self, secret: str) -> Actor | None:
        """Reads the tokens table, following the log a little if the token is not there yet."""
        digest = hash_token(secret)
        view = self._find(lambda: find_active_token(self._read, digest))
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

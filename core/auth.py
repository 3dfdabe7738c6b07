"""The origin (Echo's owner) is whoever presents the token in $ECHO_ORIGIN_TOKEN; a user is
whoever presents the key the owner made for that user name (user_key)."""

from __future__ import annotations

import hashlib
import hmac
import os

TOKEN_ENV = "ECHO_ORIGIN_TOKEN"
ENABLE_HINT = f"set {TOKEN_ENV} in the environment that starts Echo (and Ray) to enable them"


def origin_token() -> str | None:
    # Surrounding whitespace (a "\r" from a .env saved on Windows) can never arrive in an HTTP
    # header, which drops it: kept, it would lock the owner out with a token that looks right.
    token = os.environ.get(TOKEN_ENV, "").strip()
    return token if token else None


def token_problem(token: str) -> str | None:
    """Why a token cannot work as sent in 'Authorization: Bearer <token>', or None."""
    if not all("!" <= c <= "~" for c in token):
        return "has spaces, control or non-ASCII characters, which an HTTP header does not carry as they are"
    return None


def is_origin(authorization: str | None, token: str | None) -> bool:
    """True only for `Bearer <token>` with the exact token, compared in constant time."""
    if not token or not authorization:
        return False
    scheme, _, presented = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return False
    # compare_digest on bytes runs in time independent of where the strings differ.
    return hmac.compare_digest(presented.encode("utf-8", "surrogatepass"), token.encode("utf-8", "surrogatepass"))


def user_key(token: str, user: str) -> str:
    """The key the owner gives one user: with it (as 'Authorization: Bearer <key>' and that
    user name) Echo recalls that user's memories for them. Derived from the owner's token, so
    there is nothing to store, and a new token revokes every key."""
    digest = hmac.new(token.encode("utf-8", "surrogatepass"), f"echo-user:{user}".encode("utf-8", "surrogatepass"), hashlib.sha256)
    return f"echo-user-{digest.hexdigest()[:40]}"


def is_user(authorization: str | None, token: str | None, user: str) -> bool:
    """True only for `Bearer <key>` with the exact key of this user name."""
    return bool(token) and is_origin(authorization, user_key(token, user))

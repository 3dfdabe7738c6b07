"""Who is asking. The origin (Echo's owner) is whoever presents the token in
$ECHO_ORIGIN_TOKEN; a user is whoever presents the key the owner made for that user name
(user_key); anyone else is a guest."""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from dataclasses import dataclass

from echo.brain.errors import AskError

TOKEN_ENV = "ECHO_ORIGIN_TOKEN"
ORIGIN_USER = "origin"
GUEST_USER = "guest"
# A user name is a folder under memory/dayMMDD/: letters (Hangul too), digits, '_', '-', '.'.
USER_PATTERN = r"^[A-Za-z0-9가-힣_][A-Za-z0-9가-힣_.-]{0,63}$"
USER_RULE = "1-64 letters, digits, '_', '-' or '.', not starting with '.' or '-'"
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


def is_user_name(name: str) -> bool:
    return re.match(USER_PATTERN, name) is not None


@dataclass(frozen=True)
class Asker:
    """Who a request comes from: the user name its exchange is saved under, whether it holds
    the owner's token (origin) or that user's key (keyed)."""

    user: str
    origin: bool
    keyed: bool

    @property
    def may_recall(self) -> bool:
        # A user name alone is only a claim: memories come back only to a token or key holder.
        return self.origin or self.keyed


def identify(requested: str | None, authorization: str | None, token: str | None) -> Asker:
    """The asker of a request: a user name needs its key or the owner's token (401 otherwise), and
    the name 'origin' the owner's token (403); without a name, a guest."""
    origin = is_origin(authorization, token)
    user = requested or (ORIGIN_USER if origin else GUEST_USER)
    if user == ORIGIN_USER and not origin:
        raise AskError(
            403,
            "reserved_user",
            f"the user name {ORIGIN_USER!r} belongs to Echo's owner: send the owner's token as 'Authorization: Bearer <token>', or choose another user name",
        )
    keyed = is_user(authorization, token, user)
    if requested and requested != GUEST_USER and not (origin or keyed):
        # Saving under a name needs that name's key: nobody writes in another's memory.
        raise AskError(
            401,
            "user_key_required",
            f"talking as {requested!r} needs {requested}'s key (or the owner's token) as 'Authorization: Bearer <key>': "
            f"the owner makes it with `echo-server user-key {requested}`; or leave out the user name to talk as a guest",
        )
    return Asker(user, origin, keyed)


def require_origin(authorization: str | None, token: str | None, what: str) -> None:
    """Raise unless the request holds the owner's token: memories are private."""
    if token is None:
        raise AskError(403, "privileged_disabled", f"{what} is for Echo's owner only, and disabled because no origin token is configured: {ENABLE_HINT}")
    if not authorization:
        raise AskError(401, "token_required", f"{what} is for Echo's owner only: send 'Authorization: Bearer <token>'")
    if not is_origin(authorization, token):
        raise AskError(403, "origin_only", f"{what} is for Echo's owner only, and this token is not the owner's")


def whose_facts(requested: str | None, authorization: str | None, token: str | None) -> str | None:
    """Whose facts a request may see and change: the owner's token sees everyone's (None) or
    the requested user's; a user's key only that user's own. Facts about a person are shown to
    that person and the owner, never to anyone else."""
    what = "What Echo knows about people"
    if token is None:
        raise AskError(
            403, "privileged_disabled", f"{what} is shown to them and the owner only, and disabled because no origin token is configured: {ENABLE_HINT}"
        )
    if is_origin(authorization, token):
        return requested
    if requested and is_user(authorization, token, requested):
        return requested
    if not authorization:
        raise AskError(
            401,
            "key_required",
            f"{what} is shown to the person it is about and the owner only: send your user name (user=...) and your key as 'Authorization: Bearer <key>'",
        )
    raise AskError(
        403, "not_yours", "this key is not the owner's, nor the key of the user named: a user sees only their own facts (send user=<your name> with your key)"
    )

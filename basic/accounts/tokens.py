"""API tokens: making one (its key is returned once, never stored), finding the user a key belongs
to (REST and WebSockets both ask here), revoking; and creating users with a token for scripts."""
import hashlib
import secrets
from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.utils import timezone

from basic.accounts.models import ApiToken
from basic.core.prepared_query import PreparedQuery

PREFIX_LENGTH = 8
MAX_KEY_LENGTH = 128  # ours are 43 characters, migrated DRF keys 40: anything longer is not a key
LAST_USED_EVERY = timedelta(seconds=60)  # `last_used` is written at most this often per token
# Every REST call and authenticated socket asks this: its SQL is compiled once (basic/core/prepared_query.py).
TOKEN_AND_USER = PreparedQuery(lambda digest: ApiToken.objects.select_related("user").filter(digest=digest), 1)


def digest_of(key: str) -> str:
    """The SHA-256 hex digest a key is stored and looked up as."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def create_token(user: Any, name: str = "") -> tuple[ApiToken, str]:
    """A new token for `user`: the saved row and its key (the only time the key exists)."""
    key = secrets.token_urlsafe(32)
    token = ApiToken.objects.create(user=user, name=name[:100], prefix=key[:PREFIX_LENGTH], digest=digest_of(key))
    return token, key


def authenticate_key(key: Any) -> tuple[Any, ApiToken] | None:
    """(user, token) for a key of an active user, else None. Notes the use (at most once a minute)."""
    if not isinstance(key, str) or not key or len(key) > MAX_KEY_LENGTH:
        return None
    token = TOKEN_AND_USER.get(digest_of(key))
    if token is None or not token.user.is_active:
        return None
    now = timezone.now()
    if token.last_used is None or now - token.last_used >= LAST_USED_EVERY:
        ApiToken.objects.filter(pk=token.pk).update(last_used=now)
        token.last_used = now
    return token.user, token


def user_for_key(key: Any) -> Any:
    """The active user owning this key, or None (WebSockets' `?token=` and auth frame)."""
    found = authenticate_key(key)
    return found[0] if found else None


def tokens_of(user: Any) -> Any:
    """A user's own tokens, newest first (a QuerySet)."""
    return ApiToken.objects.filter(user=user)


def revoke(token: ApiToken) -> None:
    """Revoke a token: its key stops working for the next request or socket."""
    token.delete()


def user_with_token(*, username: str, password: str | None = None, staff: bool = False,
                    token_name: str = "created by a script") -> tuple[Any, str]:
    """Create (or update) a user and return it with a new API token's key (for `make run`'s demo
    account, `manage.py create_api_user` and tests)."""
    User = get_user_model()
    user, _ = User.objects.get_or_create(username=username)
    user.is_staff = user.is_superuser = staff
    user.set_password(password or secrets.token_urlsafe(12))
    user.save()
    _token, key = create_token(user, token_name)
    return user, key

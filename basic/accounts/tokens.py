"""Creating users and their API tokens (for `make run`'s demo account and for scripts)."""
import secrets

from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token


def user_with_token(*, username: str, password: str | None = None, staff: bool = False) -> tuple[object, str]:
    """Create (or update) a user and return it with its API token key."""
    User = get_user_model()
    user, _ = User.objects.get_or_create(username=username)
    user.is_staff = user.is_superuser = staff
    user.set_password(password or secrets.token_urlsafe(12))
    user.save()
    token, _ = Token.objects.get_or_create(user=user)
    return user, token.key

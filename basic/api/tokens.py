"""`/api/auth/tokens/`: a user's own API tokens, to list (never a key or its digest) and revoke.
New tokens come from signing in (`POST /api/auth/token/`, basic/accounts/login_throttle.py)."""
from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import generics

from basic.accounts import tokens
from basic.accounts.serializers import ApiTokenSerializer
from basic.models import ApiToken


class OwnTokens:
    """Only the caller's tokens, staff included: another user's token id is a 404 like a missing one."""

    serializer_class = ApiTokenSerializer

    def get_queryset(self) -> Any:
        return tokens.tokens_of(self.request.user)  # type: ignore[attr-defined]


@extend_schema(summary="Your API tokens", description="Name, key prefix, creation and last use; never the key.")
class ApiTokenListView(OwnTokens, generics.ListAPIView):
    pass


@extend_schema(summary="Revoke one of your API tokens", description="Its key stops working at once.")
class ApiTokenRevokeView(OwnTokens, generics.DestroyAPIView):
    def perform_destroy(self, instance: ApiToken) -> None:
        tokens.revoke(instance)

"""REST authentication by `Authorization: Token <key>`, looked up by the key's digest
(basic/accounts/tokens.py). DRF's header parsing and its `WWW-Authenticate: Token` are kept."""
from typing import Any

from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication

from basic.accounts import tokens


class ApiTokenAuthentication(TokenAuthentication):
    """DRF's TokenAuthentication over hashed ApiTokens instead of plain authtoken rows."""

    def authenticate_credentials(self, key: str) -> tuple[Any, Any]:
        found = tokens.authenticate_key(key)
        if found is None:
            raise exceptions.AuthenticationFailed("Invalid token.")
        return found

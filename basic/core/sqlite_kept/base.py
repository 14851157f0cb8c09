"""Django's SQLite backend with connections kept once closed (basic/core/kept_connections.py).
A SQLite connection holds nothing on a server, and it sees other connections' writes and schema
changes as a new one would."""
from typing import Any

from django.db.backends.sqlite3 import base

from basic.core.kept_connections import KeptConnections


class DatabaseWrapper(KeptConnections, base.DatabaseWrapper):
    def _shelf_key(self, conn_params: dict) -> str:
        return f"sqlite:{conn_params['database']}"

    def _can_keep(self, raw: Any) -> bool:
        return not raw.in_transaction and raw.isolation_level is None

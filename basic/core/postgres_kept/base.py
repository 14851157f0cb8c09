"""Django's PostgreSQL backend with connections kept once closed (basic/core/kept_connections.py),
for processes without Django's pool: the gevent workers, whose greenlets must never wait for a
connection (a pool made 100 running jobs queue for them). Opening one was a third of a trivial
job's worker CPU on PostgreSQL. A kept connection is asked `SELECT 1` as it is taken, so one the
server dropped meanwhile (a restart) is closed and another opened instead of failing a job."""
from typing import Any

from django.db.backends.postgresql import base
from psycopg import IsolationLevel, pq

from basic.core.kept_connections import KeptConnections


class DatabaseWrapper(KeptConnections, base.DatabaseWrapper):
    def _shelf_key(self, conn_params: dict) -> str:
        return "postgres:" + repr(sorted((key, str(value)) for key, value in conn_params.items()
                                         if key not in ("context", "cursor_factory")))

    def _can_keep(self, raw: Any) -> bool:
        return (not self.pool and not raw.closed and raw.autocommit
                and raw.info.transaction_status == pq.TransactionStatus.IDLE)

    def _still_good(self, raw: Any) -> bool:
        try:
            raw.execute("SELECT 1")
        except Exception:
            return False
        return raw.info.transaction_status == pq.TransactionStatus.IDLE

    def _adopt(self, raw: Any) -> None:
        level = self.settings_dict["OPTIONS"].get("isolation_level")
        self.isolation_level = IsolationLevel.READ_COMMITTED if level is None else IsolationLevel(level)

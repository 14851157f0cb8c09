"""Django's SQLite backend, connections kept once closed (ENGINE "basic.core.sqlite_kept")."""

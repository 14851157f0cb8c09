"""Django's PostgreSQL backend, connections kept once closed (ENGINE "basic.core.postgres_kept")."""

"""Django's SQLite backend with opened connections kept for the next user (ENGINE
"basic.core.sqlite_kept"; see base.py)."""

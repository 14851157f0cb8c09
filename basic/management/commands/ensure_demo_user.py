"""`manage.py ensure_demo_user`: on an empty user table, create a demo account and print how to sign in."""
import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from basic.accounts.tokens import user_with_token


class Command(BaseCommand):
    help = "Create a demo account when there are no users, and print its credentials."

    def handle(self, *args, **options) -> None:  # type: ignore[no-untyped-def]
        saved = Path(settings.BASE_DIR) / "var" / "demo-credentials.txt"
        if get_user_model().objects.exists():
            if saved.exists():
                self.stdout.write(saved.read_text())
            return
        password = secrets.token_urlsafe(9)
        _user, token = user_with_token(username="demo", password=password)
        text = f"Demo account: username 'demo', password '{password}' (API token {token})\n"
        saved.parent.mkdir(parents=True, exist_ok=True)
        saved.write_text(text)
        saved.chmod(0o600)
        self.stdout.write(text)

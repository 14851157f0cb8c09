"""`manage.py create_api_user NAME [--password P] [--staff]`: prints the user's API token."""
from django.core.management.base import BaseCommand

from basic.accounts.tokens import user_with_token


class Command(BaseCommand):
    help = "Create or update a user and print its API token."

    def add_arguments(self, parser) -> None:  # type: ignore[no-untyped-def]
        parser.add_argument("username")
        parser.add_argument("--password")
        parser.add_argument("--staff", action="store_true")

    def handle(self, *args, username: str, password: str | None, staff: bool, **options) -> None:  # type: ignore[no-untyped-def]
        _user, token = user_with_token(username=username, password=password, staff=staff)
        self.stdout.write(token)

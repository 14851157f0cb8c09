"""`manage.py jobs …`: the `jobs` terminal client (basic/cli), for when it isn't installed as a
script. It talks to a running server over HTTP like the script does; it uses no database."""
import sys

from django.core.management.base import BaseCommand

from basic.cli.main import main


class Command(BaseCommand):
    help = "The terminal client: start, list, watch, cancel and download jobs (see `manage.py jobs --help`)."

    def run_from_argv(self, argv: list[str]) -> None:
        sys.exit(main(argv[2:], prog=f"{argv[0]} {argv[1]}"))

    def add_arguments(self, parser) -> None:  # type: ignore[no-untyped-def]
        parser.add_argument("args", nargs="*")

    def handle(self, *args: str, **options: object) -> None:
        code = main(list(args))
        if code:
            sys.exit(code)

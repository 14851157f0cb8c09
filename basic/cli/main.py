"""`jobs`: start, list, watch, cancel and download jobs of a running server from a terminal.

    jobs start KIND [-p key=value …] [--file PATH] [--follow] [--cancel-on-interrupt] [--json]
    jobs batch KIND [-p key=value …] [--file PATH …] [--count N] [--follow] [--json]
    jobs list [--status S] [--kind K] [--limit N] [--json]
    jobs watch ID [--cancel-on-interrupt] [--json]      (a job's ID or a batch's)
    jobs cancel ID                                      (a whole batch too)
    jobs download ID [-o FILE]                          (a batch: a zip of every member's output)
    jobs events [--kind K] [--status S] [--json]

Server and token: --url / JOBS_URL (default http://127.0.0.1:8000), --token / JOBS_TOKEN.
Exit codes: 0 done, 1 the job failed or was cancelled, 2 usage, token, URL, unknown kind or job,
3 the server is unreachable or failing, 130 Ctrl-C.
"""
import argparse
import json
import os
import re
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table
from rich.text import Text

from basic.cli.api import INTERRUPTED, JOB_NOT_DONE, OK, UNREACHABLE, USAGE, Api, CliError
from basic.cli.stream import follow_batch, follow_job, user_feed
from basic.cli.views import BatchProgressView, JsonView, ProgressView, markup_text, styled_status, terminal_text

DEFAULT_URL = "http://127.0.0.1:8000"
STATUSES = ("scheduled", "queued", "running", "done", "failed", "cancelled")
NUMBER = re.compile(r"[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?")


def param_value(text: str) -> Any:
    """`--param` values: true/false, whole numbers, decimals; anything else stays a string."""
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    if re.fullmatch(r"[+-]?\d+", text):
        return int(text)
    if NUMBER.fullmatch(text):
        return float(text)
    return text


def param(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    return key.strip(), param_value(value)


def build_parser(prog: str = "jobs") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="Start and watch jobs on a running server.",
        epilog="Exit codes: 0 done, 1 the job failed or was cancelled, 2 usage/token/URL/unknown kind, "
               "3 server unreachable, 130 Ctrl-C.")
    common = argparse.ArgumentParser(add_help=False)
    # Given before or after the command: in the subcommands' copy they default to SUPPRESS, so a
    # subcommand never resets what was given before it.
    defaults = {"url": os.environ.get("JOBS_URL") or DEFAULT_URL, "token": os.environ.get("JOBS_TOKEN", ""),
                "json": False, "reconnect_timeout": 300.0}
    for target, sub in ((parser, False), (common, True)):
        def default(name: str, sub: bool = sub) -> Any:
            return argparse.SUPPRESS if sub else defaults[name]

        def helped(text: str, sub: bool = sub) -> str:
            return argparse.SUPPRESS if sub else text

        target.add_argument("--url", default=default("url"),
                            help=helped("the server (env JOBS_URL; default %(default)s)"))
        target.add_argument("--token", default=default("token"), help=helped("API token (env JOBS_TOKEN)"))
        target.add_argument("--json", action="store_true", default=default("json"),
                            help="one JSON object per line, for scripts")
        target.add_argument("--reconnect-timeout", type=float, metavar="SECONDS", default=default("reconnect_timeout"),
                            help=helped("give up after this long without the server (default %(default)s)"))
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    start = commands.add_parser("start", parents=[common], help="start a job")
    start.add_argument("kind", help="the job kind, e.g. students_by_age")
    start.add_argument("-p", "--param", dest="params", action="append", type=param, default=[], metavar="KEY=VALUE",
                       help="a parameter (true/false and numbers are typed); repeat for more")
    start.add_argument("--file", type=Path, help="the upload, for kinds that take a file")
    start.add_argument("-f", "--follow", action="store_true", help="show its progress until it ends")
    start.add_argument("--cancel-on-interrupt", action="store_true", help="with --follow: Ctrl-C cancels the job")

    batch = commands.add_parser("batch", parents=[common], help="start several jobs as one batch")
    batch.add_argument("kind", help="the job kind, e.g. thumbnails")
    batch.add_argument("-p", "--param", dest="params", action="append", type=param, default=[], metavar="KEY=VALUE",
                       help="a parameter of every job (true/false and numbers are typed); repeat for more")
    batch.add_argument("--file", dest="files", action="append", type=Path, default=[],
                       help="an upload: one job per file; repeat for more")
    batch.add_argument("--count", type=int, default=None, help="without --file: this many jobs of the parameters")
    batch.add_argument("-f", "--follow", action="store_true", help="show its progress until it ends")
    batch.add_argument("--cancel-on-interrupt", action="store_true", help="with --follow: Ctrl-C cancels the batch")

    listing = commands.add_parser("list", parents=[common], help="your jobs, newest first")
    listing.add_argument("--status", choices=STATUSES)
    listing.add_argument("--kind")
    listing.add_argument("--limit", type=int, default=20, help="at most this many (default %(default)s)")

    watch = commands.add_parser("watch", parents=[common], help="show a job's progress until it ends")
    watch.add_argument("id")
    watch.add_argument("--cancel-on-interrupt", action="store_true", help="Ctrl-C cancels the job")

    cancel = commands.add_parser("cancel", parents=[common], help="cancel a queued or running job")
    cancel.add_argument("id")

    download = commands.add_parser("download", parents=[common], help="save a finished job's result")
    download.add_argument("id")
    download.add_argument("-o", "--output", help="file to write (- for stdout; default: the server's file name)")

    feed = commands.add_parser("events", parents=[common], help="your jobs' events as they happen (Ctrl-C stops)")
    feed.add_argument("--kind", help="only jobs of this kind")
    feed.add_argument("--status", choices=STATUSES, help="only events with this status")
    return parser


def main(argv: Sequence[str] | None = None, prog: str = "jobs") -> int:
    parser = build_parser(prog)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: 2 for usage errors, 0 for --help
        return int(exc.code or 0)
    if not args.command:
        parser.print_usage(sys.stderr)
        return USAGE
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    api = None
    try:
        if not args.token:
            raise CliError(f"No API token: pass --token or set JOBS_TOKEN (POST {args.url.rstrip('/')}"
                           "/api/auth/token/ with your username and password gives one).")
        api = Api(args.url, args.token)
        return COMMANDS[args.command](api, args, err)
    except CliError as exc:
        err.print(Text.assemble(("Error:", "red"), " ", terminal_text(exc.message, multiline=True)))
        return exc.code
    except KeyboardInterrupt:
        err.print("Interrupted.")
        return INTERRUPTED
    except BrokenPipeError:  # e.g. `jobs list | head`
        return OK
    finally:
        if api is not None:
            api.close()


# --- commands --------------------------------------------------------------------------------------

def cmd_start(api: Api, args: argparse.Namespace, err: Console) -> int:
    params = dict(args.params)
    if args.file is not None and not args.file.is_file():
        raise CliError(f"No such file: {args.file}")
    job = api.start(args.kind, params, args.file)
    if not args.follow:
        if args.json:
            print(json.dumps(job), flush=True)
        else:
            print(terminal_text(job["id"]), flush=True)
            job_id = terminal_text(job["id"])
            err.print(Text(f"Started {terminal_text(job['kind'])} job {job_id}. Watch it: jobs watch {job_id}"))
        return OK
    if not args.json:
        err.print(f"Started {markup_text(job['kind'])} job [bold]{markup_text(job['id'])}[/]")
    return follow(api, job, args, err, from_start=True)


def cmd_batch(api: Api, args: argparse.Namespace, err: Console) -> int:
    if args.files and args.count is not None:
        raise CliError("Give --file (one job per file) or --count, not both.")
    for path in args.files:
        if not path.is_file():
            raise CliError(f"No such file: {path}")
    batch = api.start_batch(args.kind, dict(args.params), args.files, 1 if args.count is None else args.count)
    batch_id = terminal_text(batch["id"])
    if not args.follow:
        if args.json:
            print(json.dumps(batch), flush=True)
        else:
            print(batch_id, flush=True)
            err.print(Text(f"Started a batch of {batch['total']} {terminal_text(args.kind)} jobs: {batch_id}. "
                           f"Watch it: jobs watch {batch_id}"))
        return OK
    return follow_the_batch(api, batch, args, err, from_start=True)


def follow_the_batch(api: Api, batch: dict[str, Any], args: argparse.Namespace, err: Console,
                     from_start: bool) -> int:
    """The batch's bar from its socket, its members' bars refreshed from its row at most every second."""
    batch_id = str(batch["id"])
    view = JsonView(err) if args.json else BatchProgressView(err, batch)
    refreshed = [0.0]

    def show(frame: dict[str, Any]) -> None:
        view.show(frame)
        if isinstance(view, BatchProgressView) and time.monotonic() - refreshed[0] >= 1:
            refreshed[0] = time.monotonic()
            view.members(api.batch(batch_id).get("members") or [])

    try:
        with view:
            final = follow_batch(api, batch_id, show, view.note, patience=args.reconnect_timeout,
                                 from_start=from_start)
            if isinstance(view, BatchProgressView):
                view.members(api.batch(batch_id).get("members") or [])
            view.finish(final, batch_id)
    except KeyboardInterrupt:
        if getattr(args, "cancel_on_interrupt", False):
            api.cancel_batch(batch_id)
            err.print(Text(f"Cancel requested for batch {terminal_text(batch_id)}."))
        else:
            err.print(Text(f"Stopped watching; batch {terminal_text(batch_id)} goes on."))
        return INTERRUPTED
    return OK if final.get("status") == "done" else JOB_NOT_DONE


def cmd_watch(api: Api, args: argparse.Namespace, err: Console) -> int:
    what, job = api.job_or_batch(args.id)
    if what == "batch":
        return follow_the_batch(api, job, args, err, from_start=job["status"] not in ("done", "failed", "cancelled"))
    # A finished job: its final state at once. A live one: every event so far, then live.
    return follow(api, job, args, err, from_start=job["status"] not in ("done", "failed", "cancelled"))


def follow(api: Api, job: dict[str, Any], args: argparse.Namespace, err: Console, from_start: bool) -> int:
    job_id = str(job["id"])
    view = JsonView(err) if args.json else ProgressView(err, job)
    try:
        with view:
            final = follow_job(api, job_id, view.show, view.note, patience=args.reconnect_timeout,
                               from_start=from_start)
            view.finish(final, job_id)
    except KeyboardInterrupt:
        if getattr(args, "cancel_on_interrupt", False):
            try:
                cancelled = api.cancel(job_id)
                err.print(Text(f"Cancel requested for job {terminal_text(job_id)} "
                               f"(now {terminal_text(cancelled['status'])})."))
            except CliError as exc:
                err.print(Text(f"Could not cancel job {terminal_text(job_id)}: {terminal_text(exc.message)}"))
        else:
            job_id = terminal_text(job_id)
            err.print(Text(f"Stopped watching; job {job_id} goes on (jobs watch {job_id}, jobs cancel {job_id})."))
        return INTERRUPTED
    return OK if final.get("status") == "done" else JOB_NOT_DONE


def cmd_list(api: Api, args: argparse.Namespace, err: Console) -> int:
    if args.limit < 1:
        raise CliError("--limit must be at least 1.")
    jobs = api.jobs(status=args.status, kind=args.kind, limit=args.limit)
    if args.json:
        for job in jobs:
            print(json.dumps(job), flush=True)
        return OK
    if not sys.stdout.isatty():  # for pipes: one tab-separated line per job
        for job in jobs:
            print("\t".join(terminal_text(job.get(name) or "") for name in
                            ("id", "kind", "status", "progress", "created", "message")))
        return OK
    table = Table(box=None, header_style="bold")
    for column in ("ID", "Kind", "Status", "Progress", "Created", "Message"):
        table.add_column(column, no_wrap=column in ("ID", "Created"))
    for job in jobs:
        table.add_row(Text(terminal_text(job["id"])), Text(terminal_text(job["kind"])), styled_status(job["status"]),
                      Text(f"{terminal_text(job['progress'])}%"),
                      Text(terminal_text(short_time(job["created"], "%Y-%m-%d %H:%M:%S"))),
                      Text(terminal_text(job.get("error") or job.get("message") or "")))
    Console(highlight=False).print(table if jobs else "No jobs.")
    return OK


def cmd_cancel(api: Api, args: argparse.Namespace, err: Console) -> int:
    what, _ = api.job_or_batch(args.id)
    if what == "batch":
        batch = api.cancel_batch(args.id)
        if args.json:
            print(json.dumps(batch), flush=True)
        else:
            err.print(Text(f"Batch {terminal_text(batch['id'])}: cancel requested ({terminal_text(batch['status'])})."))
        return OK
    job = api.cancel(args.id)
    if args.json:
        print(json.dumps(job), flush=True)
    elif job["status"] == "cancelled":
        err.print(Text(f"Job {terminal_text(job['id'])} cancelled."))
    else:
        err.print(Text(f"Cancel requested: job {terminal_text(job['id'])} stops at its next step."))
    return OK


def cmd_download(api: Api, args: argparse.Namespace, err: Console) -> int:
    what, _ = api.job_or_batch(args.id)
    name, chunks, response = api.download_batch(args.id) if what == "batch" else api.download(args.id)
    target = args.output or name
    size = 0
    try:
        if target == "-":
            for chunk in chunks:
                sys.stdout.buffer.write(chunk)
                size += len(chunk)
            sys.stdout.buffer.flush()
            return OK
        path = Path(target)
        fd, temp = tempfile.mkstemp(dir=path.parent if str(path.parent) else ".", prefix=f".{path.name}.")
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in chunks:
                    out.write(chunk)
                    size += len(chunk)
            os.replace(temp, path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
    except httpx.TransportError as exc:
        raise CliError(f"The download broke off: {exc}", UNREACHABLE) from exc
    except OSError as exc:
        raise CliError(f"Cannot write {target}: {exc.strerror or exc}") from exc
    finally:
        response.close()
    err.print(Text(f"Saved {terminal_text(path)} ({size} bytes)."))
    return OK


def cmd_events(api: Api, args: argparse.Namespace, err: Console) -> int:
    api.jobs(limit=1)  # a clear error for a bad URL or token before listening
    kinds: dict[str, str | None] = {}
    out = Console(highlight=False)

    def kind_of(event: dict[str, Any]) -> str | None:
        if event.get("kind"):
            return event["kind"]
        if event.get("batch"):
            return "batch"
        job_id = str(event.get("job"))
        if job_id not in kinds:
            try:
                kinds[job_id] = api.job(job_id)["kind"]
            except CliError:
                kinds[job_id] = None
        return kinds[job_id]

    def show(event: dict[str, Any]) -> None:
        if args.status and event.get("status") != args.status:
            return
        kind = kind_of(event) if (args.kind or not args.json) else event.get("kind")
        if args.kind and kind != args.kind:
            return
        if args.json:
            print(json.dumps({**event, "kind": kind} if kind else event), flush=True)
            return
        line = (f"{short_time(event.get('ts'))}  {event.get('type', ''):<13} {event.get('job') or event.get('batch')}  "
                f"{kind or '?':<16} {event.get('status', ''):<9} {event.get('progress', 0):>3}%  "
                f"{event.get('error') or event.get('message') or ''}")
        out.print(Text(terminal_text(line)), soft_wrap=True)

    filters = [f"kind {args.kind}" if args.kind else "", f"status {args.status}" if args.status else ""]
    shown = " and ".join(part for part in filters if part)

    def listening() -> None:  # on stderr, so --json output stays pure
        err.print(f"Listening for your jobs' events{' with ' + markup_text(shown) if shown else ''}; Ctrl-C stops.")

    user_feed(api, show, lambda text: err.print(Text(terminal_text(text), style="dim")),
              patience=args.reconnect_timeout, on_open=listening)
    return OK


def short_time(value: Any, fmt: str = "%H:%M:%S") -> str:
    try:
        return datetime.fromisoformat(str(value)).astimezone().strftime(fmt)
    except ValueError:
        return str(value or "")


COMMANDS = {"start": cmd_start, "batch": cmd_batch, "list": cmd_list, "watch": cmd_watch, "cancel": cmd_cancel,
            "download": cmd_download, "events": cmd_events}


if __name__ == "__main__":
    sys.exit(main())

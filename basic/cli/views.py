"""How the client shows a job: a live rich progress bar with the job's message, or (`--json`)
one JSON line per frame on stdout for scripts. Notes (reconnecting…) go to stderr."""
import json
import sys
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, Task, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.text import Text

STATUS_STYLES = {"queued": "yellow", "running": "cyan", "done": "green", "failed": "red", "cancelled": "magenta"}


def styled_status(status: str) -> str:
    return f"[{STATUS_STYLES.get(status, 'white')}]{escape(status)}[/]"


class StateColumn(SpinnerColumn):
    """A spinner while the job is active; a mark once it ended (a failed bar is not finished)."""

    MARKS = {"done": ("✓", "green"), "failed": ("✗", "red"), "cancelled": ("■", "magenta")}

    def render(self, task: Task) -> Text:
        mark = self.MARKS.get(task.fields.get("ended", ""))
        return Text(mark[0], style=mark[1]) if mark else super().render(task)


class JsonView:
    """Each frame exactly as received, one per line, flushed at once."""

    def __init__(self, err: Console) -> None:
        self.err = err

    def __enter__(self) -> "JsonView":
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def show(self, frame: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(frame, separators=(",", ":")) + "\n")
        sys.stdout.flush()

    def note(self, text: str) -> None:
        self.err.print(escape(text), style="dim", highlight=False)

    def finish(self, frame: dict[str, Any], job_id: str) -> None:
        pass


class ProgressView:
    """A bar for one job: kind, bar, percent, status, the latest message, elapsed time."""

    def __init__(self, err: Console, job: dict[str, Any]) -> None:
        self.err = err
        self.job_id = str(job["id"])
        self.progress = Progress(
            StateColumn(),
            TextColumn("[bold]{task.fields[kind]}[/]"),
            BarColumn(bar_width=30),
            TaskProgressColumn(),
            TextColumn("{task.fields[status]}"),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=err,
        )
        self.task = self.progress.add_task(escape(job.get("message") or ""), total=100,
                                           completed=job.get("progress") or 0,
                                           kind=escape(job.get("kind") or "job"),
                                           status=styled_status(job.get("status") or "queued"), ended="")

    def __enter__(self) -> "ProgressView":
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def show(self, frame: dict[str, Any]) -> None:
        status = frame.get("status") or ""
        progress = 100 if status == "done" else frame.get("progress") or 0
        fields: dict[str, Any] = {"status": styled_status(status)} if status else {}
        if status in StateColumn.MARKS:
            fields["ended"] = status
        if frame.get("kind"):
            fields["kind"] = escape(frame["kind"])
        self.progress.update(self.task, completed=progress, description=escape(frame.get("message") or ""), **fields)

    def note(self, text: str) -> None:
        self.progress.console.print(escape(text), style="dim", highlight=False)

    def finish(self, frame: dict[str, Any], job_id: str) -> None:
        self.progress.stop()
        status = frame.get("status")
        if status == "done":
            hint = f" Download: jobs download {job_id}" if frame.get("result_url") else ""
            self.err.print(f"[green]Done[/]: {escape(frame.get('message') or '')}.{hint}", highlight=False)
        elif status == "failed":
            self.err.print(f"[red]Failed[/]: {escape(frame.get('error') or frame.get('message') or '')}",
                           highlight=False)
        else:
            self.err.print(f"[magenta]Cancelled[/]: {escape(frame.get('message') or '')}", highlight=False)

"""How the client shows a job: a live rich progress bar with the job's message, or (`--json`)
one JSON line per frame on stdout for scripts. Notes (reconnecting…) go to stderr.

Every string from the server (or a socket, or an exception about them) is shown through
`terminal_text`, so none can drive the terminal: a job's message may quote a web page's title. Free
text is printed as rich `Text` (never parsed as markup or emoji codes), and markup strings that hold
server text pass it through `markup_text`. `--json` lines are safe as they are: `json.dumps`
writes every control character as an escape."""
import json
import re
import sys
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, Task, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.text import Text

STATUS_STYLES = {"scheduled": "blue", "queued": "yellow", "running": "cyan", "done": "green", "failed": "red",
                 "cancelled": "magenta"}

# What a terminal may execute or that may hide or reorder text: C0 controls (ESC starts CSI and OSC
# sequences; BEL, BS, CR overwrite), DEL, C1 controls (0x9b is a one-byte CSI, 0x9d an OSC), bidi
# overrides and isolates, the BOM, and lone surrogates (which can't even be encoded to print).
_UNSAFE_LINE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2028\u2029"
                          "\u2066-\u2069\ufeff\ud800-\udfff]")
_UNSAFE_LINES = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2028\u2029"
                           "\u2066-\u2069\ufeff\ud800-\udfff]")


def _visible(match: re.Match[str]) -> str:
    code = ord(match.group())
    return "    " if code == 9 else f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def terminal_text(value: object, *, multiline: bool = False) -> str:
    """`value` as text a terminal shows and never executes: every control character (and bidi
    override, BOM, lone surrogate) is written out visibly, e.g. ESC as `\\x1b`. A tab becomes
    spaces; a line break is kept only with `multiline`. The one function between the server's
    strings and the screen."""
    text = "" if value is None else value if isinstance(value, str) else str(value)
    return (_UNSAFE_LINES if multiline else _UNSAFE_LINE).sub(_visible, text)


def markup_text(value: object, *, multiline: bool = False) -> str:
    """`terminal_text`, escaped for a rich markup string: `[bold]` or `[link=…]` print as written."""
    return escape(terminal_text(value, multiline=multiline))


def styled_status(status: str) -> str:
    return f"[{STATUS_STYLES.get(status, 'white')}]{markup_text(status)}[/]"


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
        self.err.print(Text(terminal_text(text), style="dim"))

    def finish(self, frame: dict[str, Any], job_id: str) -> None:
        pass


class ProgressView:
    """A bar for one job: kind, bar, percent, status, the latest message, elapsed time."""

    def __init__(self, err: Console, job: dict[str, Any]) -> None:
        self.err = err
        self.job_id = str(job["id"])
        self.progress = Progress(
            StateColumn(),
            TextColumn("{task.fields[kind]}", style="bold", markup=False),
            BarColumn(bar_width=30),
            TaskProgressColumn(),
            TextColumn("{task.fields[status]}"),
            TextColumn("{task.description}", markup=False),
            TimeElapsedColumn(),
            console=err,
        )
        self.task = self.progress.add_task(terminal_text(job.get("message") or ""), total=100,
                                           completed=_percent(job.get("progress")),
                                           kind=terminal_text(job.get("kind") or "job"),
                                           status=styled_status(job.get("status") or "queued"), ended="")

    def __enter__(self) -> "ProgressView":
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def show(self, frame: dict[str, Any]) -> None:
        status = frame.get("status") or ""
        progress = 100 if status == "done" else _percent(frame.get("progress"))
        fields: dict[str, Any] = {"status": styled_status(str(status))} if status else {}
        if status in StateColumn.MARKS:
            fields["ended"] = status
        if frame.get("kind"):
            fields["kind"] = terminal_text(frame["kind"])
        self.progress.update(self.task, completed=progress, description=terminal_text(frame.get("message") or ""),
                             **fields)

    def note(self, text: str) -> None:
        self.progress.console.print(Text(terminal_text(text), style="dim"))

    def finish(self, frame: dict[str, Any], job_id: str) -> None:
        self.progress.stop()
        status = frame.get("status")
        if status == "done":
            hint = f" Download: jobs download {terminal_text(job_id)}" if frame.get("result_url") else ""
            self.err.print(Text.assemble(("Done", "green"), ": ", terminal_text(frame.get("message") or ""),
                                         f".{hint}"))
        elif status == "failed":
            reason = terminal_text(frame.get("error") or frame.get("message") or "", multiline=True)
            self.err.print(Text.assemble(("Failed", "red"), ": ", reason))
        else:
            self.err.print(Text.assemble(("Cancelled", "magenta"), ": ", terminal_text(frame.get("message") or "")))


def _percent(value: object) -> float:
    """A frame's progress as a number for the bar (a server's odd value draws 0, never a crash)."""
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


class BatchProgressView(ProgressView):
    """One bar for a batch (its aggregate), and under it a bar per member: the batch's own socket
    moves the first, its members' rows as the server lists them move the others (`members`)."""

    def __init__(self, err: Console, batch: dict[str, Any]) -> None:
        super().__init__(err, {"id": batch["id"], "kind": f"batch of {batch.get('total', '?')}",
                               "progress": batch.get("progress"), "status": batch.get("status"),
                               "message": _counts_text(batch.get("counts") or {})})
        self.member_tasks: dict[str, Any] = {}
        self.members(batch.get("members") or [])

    def show(self, frame: dict[str, Any]) -> None:
        status = frame.get("status") or ""
        fields: dict[str, Any] = {"status": styled_status(str(status))} if status else {}
        if status in StateColumn.MARKS:
            fields["ended"] = status
        self.progress.update(self.task, completed=_percent(frame.get("progress")),
                             description=terminal_text(frame.get("message") or _counts_text(frame)), **fields)
        if isinstance(frame.get("members"), list):  # a snapshot lists them
            self.members([{"id": m.get("job"), **m} for m in frame["members"] if isinstance(m, dict)])

    def members(self, members: list[dict[str, Any]]) -> None:
        """Add or move the member bars (indented under the batch's)."""
        for member in members:
            member_id = str(member.get("id"))
            status = str(member.get("status") or "queued")
            fields = {"status": styled_status(status), "ended": status if status in StateColumn.MARKS else ""}
            progress = 100 if status == "done" else _percent(member.get("progress"))
            message = terminal_text(member.get("error") or member.get("message") or "")
            task = self.member_tasks.get(member_id)
            if task is None:
                self.member_tasks[member_id] = self.progress.add_task(
                    message, total=100, completed=progress, kind="  " + terminal_text(member.get("kind") or "job"),
                    **fields)
            else:
                self.progress.update(task, completed=progress, description=message, **fields)

    def finish(self, frame: dict[str, Any], job_id: str) -> None:
        self.progress.stop()
        status = frame.get("status")
        style = {"done": "green", "failed": "red"}.get(str(status), "magenta")
        hint = f" Download: jobs download {terminal_text(job_id)}" if frame.get("done") else ""
        self.err.print(Text.assemble((str(status or "ended").capitalize(), style), ": ",
                                     terminal_text(frame.get("message") or ""), f".{hint}"))


def _counts_text(counts: dict[str, Any]) -> str:
    return ", ".join(f"{counts[name]} {name}" for name in ("done", "running", "queued", "failed", "cancelled")
                     if isinstance(counts.get(name), int) and counts[name])

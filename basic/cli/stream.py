"""The client's sockets: one job's or one batch's events (gapless, resumed with `after=` after any
drop) and the user's live feed. Both reconnect with backoff while the server is away (e.g. restarting)."""
import json
import random
import time
from collections.abc import Callable, Iterator
from typing import Any

from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.sync.client import ClientConnection, connect

from basic.cli.api import UNREACHABLE, USAGE, Api, CliError
from basic.cli.views import terminal_text

TERMINAL_EVENTS = {"job.done", "job.failed", "job.cancelled", "batch.done", "batch.failed", "batch.cancelled"}
SNAPSHOTS = {"job.snapshot", "batch.snapshot"}
TERMINAL_STATUSES = {"done", "failed", "cancelled"}
CLOSE_REASONS = {4401: "the server refused the token: check --token or JOBS_TOKEN",
                 4404: "no such job or batch (or it is not yours)", 4400: "the server refused the request"}
FINAL_CLOSES = set(CLOSE_REASONS)  # anything else (a restart, 4429 too many sockets, 1011) is retried

Note = Callable[[str], None]


def is_terminal(frame: dict[str, Any]) -> bool:
    return frame.get("type") in TERMINAL_EVENTS or (
        frame.get("type") in SNAPSHOTS and frame.get("status") in TERMINAL_STATUSES)


RETRY_BASE_SECONDS = 0.2
RETRY_MAX_SECONDS = 2.0


def backoff_seconds(failures: int, hint: float | None = None) -> float:
    """Full jitter: anywhere from 0 to a ceiling that doubles with each failure, so clients that lost
    the server together come back spread out; at least `hint` (the server's Retry-After or
    `retry_after`, when it is taking in too many sockets at once) plus up to as much again."""
    ceiling = min(RETRY_BASE_SECONDS * 2 ** min(failures - 1, 8), RETRY_MAX_SECONDS)
    delay = random.uniform(0, ceiling)
    if hint:
        delay = max(delay, hint * random.uniform(1, 2))
    return delay


def retry_hint(exc: BaseException | None = None, error: dict[str, Any] | None = None) -> float | None:
    """The server's retry hint: `Retry-After` of a refused handshake (503), or `retry_after` in the
    error frame sent before a close 1013."""
    response = getattr(exc, "response", None)
    value = response.headers.get("Retry-After") if response is not None else None
    if value is None and error is not None:
        value = error.get("retry_after")
    try:
        hint = float(value) if value is not None else None
    except (TypeError, ValueError):
        return None
    return min(hint, 60.0) if hint is not None and hint > 0 else None


class Reconnecting:
    """Backoff between attempts; gives up (exit 3) after `patience` seconds without a connection."""

    def __init__(self, patience: float, note: Note) -> None:
        self.patience, self.note = patience, note
        self.failures = 0
        self.down_since: float | None = None

    def connected(self) -> None:
        if self.failures:
            self.note("Reconnected.")
        self.failures, self.down_since = 0, None

    def lost(self, why: str, base_url: str, hint: float | None = None) -> None:
        """Wait before the next attempt: full jitter, and never sooner than the server's `hint`."""
        now = time.monotonic()
        if self.down_since is None:
            self.down_since = now
            self.note(f"Connection lost ({terminal_text(why)}); reconnecting…")  # why may quote the server
        if now - self.down_since > self.patience:
            raise CliError(f"Cannot reach the server at {base_url} for {self.patience:.0f} s: is it running?",
                           UNREACHABLE)
        self.failures += 1
        time.sleep(backoff_seconds(self.failures, hint))


def frames(socket: ClientConnection) -> Iterator[dict[str, Any]]:
    for raw in socket:
        try:
            frame = json.loads(raw)
        except ValueError:
            continue
        if isinstance(frame, dict):
            yield frame


def _open(url: str) -> ClientConnection:
    return connect(url, open_timeout=10, close_timeout=2, max_size=2**22, proxy=None)


def _final(close_code: int | None, error: dict[str, Any] | None) -> CliError | None:
    if close_code in FINAL_CLOSES:
        detail = terminal_text((error or {}).get("detail") or CLOSE_REASONS[close_code])  # the server's words
        if close_code == 4401:
            detail = f"The server refused the token ({detail}): check --token or JOBS_TOKEN."
        return CliError(detail, USAGE)
    return None


def follow_job(api: Api, job_id: str, show: Callable[[dict[str, Any]], None], note: Note,
               patience: float = 300.0, from_start: bool = True) -> dict[str, Any]:
    """Every event of the job from the first (or, without `from_start`, a snapshot of where it is
    now), each once and in order, then live until it ends; returns the terminal frame. A dropped
    socket resumes with `after=<last seq shown>`."""
    return _follow(api, f"/ws/jobs/{job_id}/", "job.", show, note, patience, from_start)


def follow_batch(api: Api, batch_id: str, show: Callable[[dict[str, Any]], None], note: Note,
                 patience: float = 300.0, from_start: bool = True) -> dict[str, Any]:
    """`follow_job` for a batch's aggregate events (`/ws/batches/{id}/`)."""
    return _follow(api, f"/ws/batches/{batch_id}/", "batch.", show, note, patience, from_start)


def _follow(api: Api, path: str, prefix: str, show: Callable[[dict[str, Any]], None], note: Note,
            patience: float, from_start: bool) -> dict[str, Any]:
    last_seq: int | None = 0 if from_start else None
    retry = Reconnecting(patience, note)
    while True:
        error: dict[str, Any] | None = None
        close_code: int | None = None
        try:
            query = {} if last_seq is None else {"after": last_seq}
            with _open(api.ws_url(path, **query)) as socket:
                retry.connected()
                for frame in frames(socket):
                    kind = str(frame.get("type", ""))
                    if kind == "error":
                        error = frame
                        continue
                    seq = frame.get("seq") or 0
                    if not isinstance(seq, int) or isinstance(seq, bool):
                        continue  # not a frame our server sends: never worth a crash
                    if kind == f"{prefix}snapshot":
                        last_seq = max(last_seq or 0, seq)
                    elif kind.startswith(prefix):
                        if last_seq is not None and seq <= last_seq:
                            continue  # already shown before a reconnect
                        last_seq = seq
                    else:
                        continue
                    show(frame)
                    if is_terminal(frame):
                        return frame
                close_code = socket.close_code
        except ConnectionClosed as exc:
            close_code = exc.rcvd.code if exc.rcvd else None
        except InvalidURI as exc:
            raise CliError(f"Bad socket URL: {terminal_text(exc)}") from exc
        except (OSError, InvalidHandshake, TimeoutError) as exc:
            retry.lost(type(exc).__name__ if not str(exc) else str(exc), api.base_url, retry_hint(exc))
            continue
        final = _final(close_code, error)
        if final:
            raise final
        retry.lost(f"closed with code {close_code}" if close_code else "closed", api.base_url,
                   retry_hint(error=error))


def user_feed(api: Api, show: Callable[[dict[str, Any]], None], note: Note, patience: float = 300.0,
              on_open: Callable[[], None] | None = None) -> None:
    """The signed-in user's job events as they happen (live only: events sent while the socket
    was away are not repeated). Runs until interrupted; `on_open` is called once, when the feed
    first listens."""
    retry = Reconnecting(patience, note)
    while True:
        error: dict[str, Any] | None = None
        close_code: int | None = None
        try:
            with _open(api.ws_url("/ws/events/")) as socket:
                retry.connected()
                if on_open is not None:
                    on_open()
                    on_open = None
                for frame in frames(socket):
                    if frame.get("type") == "error":
                        error = frame
                    elif str(frame.get("type", "")).startswith(("job.", "batch.")):
                        show(frame)
                close_code = socket.close_code
        except ConnectionClosed as exc:
            close_code = exc.rcvd.code if exc.rcvd else None
        except (OSError, InvalidHandshake, TimeoutError) as exc:
            retry.lost(str(exc) or type(exc).__name__, api.base_url, retry_hint(exc))
            continue
        final = _final(close_code, error)
        if final:
            raise final
        retry.lost(f"closed with code {close_code}" if close_code else "closed", api.base_url,
                   retry_hint(error=error))

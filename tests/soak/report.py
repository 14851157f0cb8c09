"""The soak's table (rich): faults injected and survived, the traffic, what was lost, and each
invariant with its numbers."""
from collections import defaultdict

from rich.console import Console
from rich.table import Table

from tests.soak.faults import KINDS
from tests.soak.invariants import EXAMPLES, long_lived, mb
from tests.soak.run import SoakResult


def render(result: SoakResult, console: Console | None = None) -> None:
    console = console or Console()
    faults = Table(title=f"Faults (seed {result.config.seed})")
    for column in ("fault", "injected", "survived", "slowest recovery"):
        faults.add_column(column, justify="left" if column == "fault" else "right")
    by_kind = defaultdict(list)
    for fault in result.faults:
        by_kind[fault.kind].append(fault)
    for kind in KINDS:
        done = by_kind[kind]
        slowest = max((f.recovery_seconds or 0.0 for f in done), default=0.0)
        faults.add_row(kind, str(len(done)), str(sum(f.survived for f in done)), f"{slowest:.1f}s" if done else "-")
    faults.add_row("all", str(len(result.faults)), str(sum(f.survived for f in result.faults)), "", style="bold")
    console.print(faults)

    jobs, streams = result.check("jobs end exactly once"), result.check("socket streams gapless")
    chat, http = result.check("chat loses nothing"), result.check("HTTP: no 5xx but 503 in outages")
    traffic = Table(title="Traffic")
    traffic.add_column("what")
    traffic.add_column("count", justify="right")
    traffic.add_column("lost", justify="right")
    traffic.add_row("REST requests (503 in outages / outside)",
                    f"{http.numbers['requests']} ({http.numbers['503_in_outages']} / {http.numbers['503_outside']})",
                    str(http.numbers["other_5xx"] + http.numbers["no_answer_outside"]))
    traffic.add_row("jobs started (202) / ended (of which failed)", f"{jobs.numbers['started']} / "
                    f"{jobs.numbers['started'] - jobs.numbers['not_terminal']} "
                    f"({jobs.numbers['statuses'].get('failed', 0)})", str(jobs.numbers["not_terminal"]))
    traffic.add_row("job and batch socket sessions (resumed)", f"{streams.numbers['sessions']} "
                    f"({streams.numbers['resumed']})", str(streams.numbers["without_end"]))
    traffic.add_row("job events received", str(streams.numbers["events"]),
                    str(streams.numbers["missing"] + streams.numbers["snapshots_in_place_of_events"]))
    traffic.add_row("chat messages sent / accepted", f"{chat.numbers['sent']} / {chat.numbers['accepted']}",
                    str(chat.numbers["lost_messages"] + chat.numbers["lost_outside_outages"]))
    traffic.add_row("chat deliveries due / received", f"{chat.numbers['deliveries_due']} / {chat.numbers['delivered']}",
                    str(chat.numbers["lost_deliveries"]))
    traffic.add_row("socket reconnects / handshakes refused",
                    f"{result.numbers['socket_reconnects']} / {http.numbers['ws_handshakes_refused']}", "")
    console.print(traffic)

    if {"warm", "end"} <= result.samples.keys():
        resources = Table(title="Long-lived processes: after warm-up -> after the load")
        for column in ("process", "RSS MB", "open files"):
            resources.add_column(column, justify="left" if column == "process" else "right")
        for then, now in long_lived(result.samples["warm"], result.samples["end"]):
            resources.add_row(f"{now.role} {now.pid}", f"{mb(then.rss)} -> {mb(now.rss)}", f"{then.fds} -> {now.fds}")
        warm, end = result.samples["warm"], result.samples["end"]
        resources.add_row("whole stack", f"{mb(warm.rss)} -> {mb(end.rss)}", f"{warm.fds} -> {end.fds}", style="bold")
        console.print(resources)

    checks = Table(title="Invariants")
    for column in ("invariant", "result", "numbers"):
        checks.add_column(column)
    for check in result.checks:
        shown = ", ".join(f"{k}={v}" for k, v in check.numbers.items())
        checks.add_row(check.name, "[green]ok[/]" if check.ok else "[red]FAILED[/]", shown)
    console.print(checks)
    for check in result.checks:
        if not check.ok:
            console.print(f"[red]{check.name}[/]:")
            for problem in check.problems[:EXAMPLES]:
                console.print(f"  {problem}", markup=False)
    timings = ", ".join(f"{k} {v:.0f}" for k, v in result.timings.items())
    verdict = "[green]PASSED[/]" if result.ok else f"[red]FAILED[/] (logs in {result.workdir})"
    console.print(f"{verdict}; {timings}")

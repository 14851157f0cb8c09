"""docs/benchmarks.md and its charts from bench/run_all.py's collected results.

The "## Profile" section of an existing docs/benchmarks.md is kept as it is (it is written by
hand from py-spy runs), so regenerating the page never loses it. `python -m bench.write_docs`
re-renders the page and charts from docs/benchmarks.json (the last results of each benchmark).
"""
import datetime
import math
import os
import platform
import re
from pathlib import Path

from bench.bench_fanout import LABELS, TARGET_P50_RATIO, TARGET_RATE_RATIO
from bench.jobs_docs import jobs_section

PAGE = "benchmarks.md"
CHART_P50 = "bench-fanout-p50.png"
CHART_RATE = "bench-fanout-throughput.png"
PROFILE_PLACEHOLDER = """## Profile

*To be filled in: py-spy profiles of Daphne under the fan-out load (where the time goes per
delivery, before and after the consumer and channel-layer changes).*
"""


def fmt(value: float, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:,.{digits}f}"


def x(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"x{value:.2f}" if value < 100 else f"x{value:,.0f}"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def kept_profile(path: Path) -> str:
    if not path.exists():
        return PROFILE_PLACEHOLDER
    text = path.read_text()
    # Everything from the Profile section on is written by hand (profiles, lessons, one-off
    # measurements) and kept as it is.
    found = re.search(r"^## Profile\b.*\Z", text, flags=re.S | re.M)
    return found.group(0).rstrip() + "\n" if found else PROFILE_PLACEHOLDER


def charts(runs: list[dict], docs: Path, rate: float) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    made = []
    variants = [v for v in LABELS if any(r["variant"] == v for r in runs)]
    for name, key, ylabel, log in ((CHART_P50, "p50_ms", "p50 latency, ms (log scale)", True),
                                   (CHART_RATE, "deliveries_per_s", "deliveries per second", False)):
        fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
        for variant in variants:
            points = sorted((r["sockets"], r[key]) for r in runs if r["variant"] == variant)
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o",
                    linestyle="--" if variant == "bare" else "-", label=LABELS[variant])
        if not log:
            sizes = sorted({r["sockets"] for r in runs})
            ax.plot(sizes, [size * rate for size in sizes], color="grey", linestyle=":", linewidth=1,
                    label="offered: sockets x sender rate")
        ax.set_xlabel(f"sockets in the room (one sender, {rate:g} messages/s)")
        ax.set_ylabel(ylabel)
        if log:
            ax.set_yscale("log")
        ax.set_xscale("log")
        sizes = sorted({r["sockets"] for r in runs})
        ax.set_xticks(sizes)
        ax.set_xticklabels([f"{s:,}" for s in sizes])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        ax.set_title("Fan-out: " + ("median latency" if log else "throughput") + " (same run, shared 2-core box)",
                     fontsize=10)
        fig.tight_layout()
        fig.savefig(docs / name)
        plt.close(fig)
        made.append(name)
    return made


def fanout_section(fan: dict, docs: Path) -> list[str]:
    runs = fan["runs"]
    lines = [
        "## Fan-out: one room, one sender, every socket timing every message",
        "",
        f"One sender sends {fan['messages']} messages at {fan['rate']:g}/s, each carrying its id and send time;",
        "every socket records receive time minus send time (client and servers share the clock). Sockets are",
        "opened in batches of 100 and must all hear a warm-up message before the clock starts; a run ends when",
        f"every socket has every message or {fan['drain']:g} s after the last send. deliveries/s is deliveries over",
        "the time from the first send to the last delivery, so below saturation it is capped by the sender's",
        "pace (sockets x 10/s). Servers, each a fresh process for its run:",
        "",
        "- **bare**: `bench/bare_server.py`, `websockets.broadcast` to every socket, no framework: the ceiling.",
        "- **tutorial**: the Channels tutorial's `ChatConsumer` (`bench/tutorial_app/`), stock",
        "  `RedisPubSubChannelLayer`, Daphne, no auth middleware.",
        "- **project chat**: this project's Daphne, `/ws/chat/bench/?token=…` (signed-in sockets).",
        "- **project seed**: the same, the seed room `/chat/` (anonymous).",
        "- **project job**: the same, one job watched by every socket on `/ws/jobs/{id}/?token=…`; the sender",
        "  is the project's pusher (`basic.jobs.publish.push_job_event`) in its own process, as in a worker.",
        "",
        "Sockets a server has not accepted within the open budget (120 s, `BENCH_OPEN_BUDGET`) count as not",
        "delivered, as do messages later than the drain. Sizes: 100, 1,000 and 3,000 by default; 5,000 works",
        "(`--sizes 100,1000,3000,5000`, about 5 minutes more), but there the bare server tops out near",
        "30,000 deliveries/s of the 50,000 offered: the 2-core box, not the server, is the limit.",
        "",
        f"Target (from the issue): p50 within x{TARGET_P50_RATIO:g} of the bare server, deliveries/s at least",
        f"x{TARGET_RATE_RATIO:g} of it, 100% delivered, at 1,000 and 3,000 sockets (marked from 1,000 up).",
        "",
        "| sockets | server | p50 ms | p99 ms | deliveries/s | delivered | p50 vs bare | p99 vs bare "
        "| deliveries/s vs bare | target |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in sorted(runs, key=lambda r: (r["sockets"], list(LABELS).index(r["variant"]))):
        target = "" if r["variant"] == "bare" or not r.get("target_applies") else (
            "**met**" if r["meets_target"] else "missed")
        lines.append(f"| {r['sockets']:,} | {LABELS[r['variant']]} | {fmt(r['p50_ms'])} | {fmt(r['p99_ms'])} | "
                     f"{fmt(r['deliveries_per_s'])} | {r['delivered_pct']:.2f}% | {x(r.get('p50_x'))} | "
                     f"{x(r.get('p99_x'))} | {x(r.get('rate_x'))} | {target} |")
    lines.append("")
    if runs:
        made = charts(runs, docs, fan["rate"])
        lines += [" ".join(f"![{name}]({name})" for name in made), ""]
    two_web = [r for r in runs if "vs_one_web" in r]
    if two_web:
        lines.append("Two web processes on one port (`basic/ops/web_pool.py`, WEB_PROCESSES=2) against one, same "
                     "run, deliveries/s (issue 21's target: x1.3 at 5,000 sockets): " + "; ".join(
                         f"{LABELS[r['variant']]} at {r['sockets']:,}: {x(r['vs_one_web'])}" for r in two_web) + ".")
        lines.append("")
    odd = [r for r in runs if r["opened"] < r["sockets"] or r.get("closed_early")]
    if odd:
        lines.append("Sockets that failed to open or closed early: " + "; ".join(
            f"{LABELS[r['variant']]} at {r['sockets']:,}: opened {r['opened']:,}, closed {r.get('closed_early')}"
            for r in odd) + ".")
        lines.append("")
    lines += client_notes(fan)
    return lines


def client_notes(fan: dict) -> list[str]:
    runs = fan["runs"]
    lines = ["### The client, and why it is not the ceiling", ""]
    bare = sorted((r for r in runs if r["variant"] == "bare"), key=lambda r: r["sockets"])
    per_delivery = []
    for r in bare:
        if not r["deliveries"]:
            continue
        client = sum(v for k, v in r["cpu_pct"].items() if k.startswith("client")) / 100 * r["window_s"]
        server = r["cpu_pct"].get("server", float("nan")) / 100 * r["window_s"]
        per_delivery.append((r, 1e6 * client / r["deliveries"], 1e6 * server / r["deliveries"]))
    lines += [
        "The client is `bench/fanout_client.py`: asyncio with a minimal RFC 6455 client on an asyncio Protocol",
        "(handshake, unmasked server frames parsed in place, pings answered, no compression), each socket",
        "matching `b|ID|TS` in the frame and appending one float; every frame of one read gets one clock",
        f"reading. {fan['clients']} client process(es) share the sockets. Why not the `websockets` library: measured",
        "against the bare server at 3,000 sockets it cost about 32 µs of client CPU per delivery against the",
        "server's 12 µs, so the client, not the server, would have set the ceiling; the minimal client costs",
        "less (table below).",
        "",
        "Why two processes on a 2-core box: the client, the server under test, Redis and whatever else runs",
        "share two cores. One client process caps the client at one core; two let it use both when it needs",
        "to, at the price of three busy processes on two cores. The bare server is the cheapest server per",
        "delivery, so its runs are where the client works hardest: at 3,000 sockets the offered load is",
        "30,000 deliveries/s, which at ~15-30 µs each is 0.5-0.9 of a core, too close to one core for one",
        "process. Against the Daphne servers the client is a few percent of a core either way, so the choice",
        "only matters for the ceiling, and there it makes the bare server look better, never worse, which",
        "keeps the project's ratios honest.",
        "",
        "CPU per delivery in the bare runs (user + system time over the measured window):",
        "",
        "| sockets | offered (sockets x rate) | bare deliveries/s | client µs/delivery | bare server µs/delivery "
        "| client CPU | bare server CPU |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r, client_us, server_us in per_delivery:
        client_pct = sum(v for k, v in r["cpu_pct"].items() if k.startswith("client"))
        lines.append(f"| {r['sockets']:,} | {fmt(r['sockets'] * r['rate'])} | {fmt(r['deliveries_per_s'])} | "
                     f"{fmt(client_us, 1)} | {fmt(server_us, 1)} | {fmt(client_pct)}% of a core | "
                     f"{fmt(r['cpu_pct'].get('server'))}% |")
    lines.append("")
    if per_delivery:
        worst = max(per_delivery, key=lambda p: p[1])[1]
        lines += [
            f"At up to {fmt(worst, 1)} µs of client CPU per delivery, one client process would saturate a core only",
            f"near {fmt(1e6 / worst)} deliveries/s, and {fan['clients']} process(es) share that; the bare server's",
            "deliveries/s growing with the socket count (up to the offered load) is the check that the client",
            "keeps up. CPU figures are per process and over the measured window; on a shared machine the",
            "processes may also wait for a core, which shows as latency, not CPU.",
            "",
        ]
    daphne = [r for r in runs if r["variant"] != "bare" and r["deliveries"]]
    if daphne:
        worst = max(daphne, key=lambda r: sum(v for k, v in r["cpu_pct"].items() if k.startswith("client")))
        client_pct = sum(v for k, v in worst["cpu_pct"].items() if k.startswith("client"))
        lines += [f"Against the Daphne servers the client used at most {fmt(client_pct)}% of a core "
                  f"({LABELS[worst['variant']]}, {worst['sockets']:,} sockets; that server "
                  f"{fmt(worst['cpu_pct'].get('server'))}%).", ""]
    return lines


def memory_section(fan: dict) -> list[str]:
    mem = fan.get("memory") or []
    if not mem:
        return []
    window = mem[0].get("idle_cpu_window_s", 6)
    total = mem[0]["warm_sockets"] + mem[0]["idle_sockets"]
    lines = [
        "## Memory (and CPU) per idle socket",
        "",
        "Resident memory (RSS) of the one server process with 100 sockets open, then with "
        f"{mem[0]['idle_sockets']:,} more idle ones; the difference per socket. The project's sockets are",
        "authenticated `?token=…` sockets: the user's event feed `/ws/events/`, and a running job's",
        "`/ws/jobs/{id}/` (all on one job); the tutorial's are anonymous chat sockets; the bare server's",
        f"are plain. Idle CPU: the server's CPU over {window:g} s with all {total:,} sockets open and no",
        "messages at all.",
        "",
        "| server | path | RSS with 100 | RSS with more | KiB per socket | vs bare | idle server CPU |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for m in mem:
        lines.append(f"| {m['variant']} | `{m['path']}` | {fmt(m['rss_before_kib'] / 1024, 1)} MiB | "
                     f"{fmt(m['rss_after_kib'] / 1024, 1)} MiB ({m['idle_sockets']:,} more) | "
                     f"{fmt(m['kib_per_socket'], 1)} | {x(m.get('x_bare'))} | "
                     f"{fmt(m.get('idle_cpu_pct'))}% of a core |")
    by_variant = {m["variant"]: m for m in mem}
    job, feed = by_variant.get("project_job"), by_variant.get("project")
    if job and feed and job.get("idle_cpu_pct", 0) > max(5.0, 5 * feed.get("idle_cpu_pct", 0)):
        lines += ["", "Idle job sockets cost CPU where idle feed sockets don't: while its job runs, each",
                  "`/ws/jobs/{id}/` socket re-reads the job's history every `JOB_SOCKET_RESYNC_SECONDS` and, when",
                  "the job has been quiet that long, queries the database (docs/design.md trap 2)."]
    return lines + [""]


def e2e_section(e2e: dict) -> list[str]:
    base_name, base = next(iter(e2e["baseline"].items()))
    lines = [
        "## End to end: trigger to socket",
        "",
        f"{e2e['completed']:,} of {e2e['jobs']:,} `students_by_age` jobs over a few students, "
        f"{e2e['concurrency']} in flight,",
        f"triggered with `POST {e2e['start_path']}` on the real stack (Daphne, a `--pool=gevent",
        "--concurrency=100` worker started as `make run` does, Redis, SQLite); each watched by a socket to",
        "`/ws/jobs/{id}/?token=…` opened as soon as the 202 arrives. Baseline, same stack and run: "
        f"*{base_name}* (the floor of asking over REST and then watching), p50 {fmt(base['p50_ms'], 1)} ms.",
        f"Throughput: {fmt(e2e['jobs_per_s'], 1)} jobs/s.",
        "",
        "| | p50 ms | p99 ms | p50 vs baseline | p99 vs baseline |",
        "|---|---:|---:|---:|---:|",
        f"| baseline: {base_name} | {fmt(base['p50_ms'], 1)} | {fmt(base['p99_ms'], 1)} | x1.00 | x1.00 |",
    ]
    for name, row in e2e["rows"].items():
        lines.append(f"| {name} | {fmt(row['p50_ms'], 1)} | {fmt(row['p99_ms'], 1)} | {x(row['p50_x'])} | "
                     f"{x(row['p99_x'])} |")
    ends = ", ".join(f"{v:,} by {k}" for k, v in e2e["ends"].items())
    lines += ["", f"The socket learnt of the end {ends} (a job that finished before its socket joined is",
              "reported by a terminal snapshot, so then *job end on the socket* is the snapshot's arrival; *as",
              "the server stamped it* is the `job.done` event's `ts` or the snapshot's `finished`, the same host's",
              "clock). Final statuses: "
              + ", ".join(f"{v:,} {k}" for k, v in e2e["statuses"].items()) + ".", ""]
    return lines


def push_section(push: dict) -> list[str]:
    lines = ["## Event push from the worker (`bench/bench_push.py`)", ""]
    seq = push["sequential"]
    base = seq["rows"][seq["baseline"]]
    lines += [f"Sequential, {seq['events']:,} events per run, median of 3:", "",
              "| pusher | events/s | vs naive |", "|---|---:|---:|"]
    lines += [f"| {name} | {fmt(v)} | {x(v / base)} |" for name, v in seq["rows"].items()]
    gev = push["gevent"]
    base = gev["rows"][gev["baseline"]]
    lines += ["", "Under gevent, 100 greenlets at once (as on the worker's pool), successful pushes/s:", "",
              "| pusher | pushes/s | vs naive | failed |", "|---|---:|---:|---:|"]
    for (name, v), (_kind, failed) in zip(gev["rows"].items(), gev["failed"].items(), strict=False):
        lines.append(f"| {name} | {fmt(v)} | {x(v / base)} | {failed['failed']:,} of {failed['of']:,} |")
    return lines + [""]


def _ms(seconds: float) -> str:
    return fmt(seconds * 1000)


def isolation_section(iso: dict) -> list[str]:
    idle, cpu, gev = iso["idle"], iso["cpu_pool"], iso["gevent_pool"]
    return [
        "## CPU work off the gevent pool (`bench/bench_cpu_isolation.py`)", "",
        f"A trivial page fetch (`POST /api/jobs/` -> the job row done), idle and while {cpu['heavy']} worst-case",
        f"thumbnail jobs run (an all-zero 7000x7000 PNG of {iso['png_bytes'] / 1024:,.0f} KB, 8 sizes), on a",
        f"{iso['cores']}-core machine: the thumbnails on the CPU queue's prefork worker (the default), then moved back",
        "to the gevent worker with `JOB_KIND_POLICIES` (as before issue 20). A fetch counts if it started",
        "while they computed, before any had ended. Target: within 2x of idle.", "",
        "| thumbnails run on | fetch p50 | max | vs idle | fetches counted | thumbnail jobs done, s |",
        "|---|---:|---:|---:|---:|---:|",
        f"| (idle) | {_ms(idle['p50_s'])} ms | {_ms(idle['max_s'])} ms | x1.00 | {idle['fetches']} | |",
        f"| CPU queue, prefork | {_ms(cpu['p50_s'])} ms | {_ms(cpu['max_s'])} ms | {x(iso['ratio_cpu_pool'])} | "
        f"{cpu['fetches']} | {cpu['heavy_done']} in {fmt(cpu['heavy_seconds'], 1)} |",
        f"| gevent worker (before) | {_ms(gev['p50_s'])} ms | {_ms(gev['max_s'])} ms | {x(iso['ratio_gevent_pool'])} | "
        f"{gev['fetches']} | {gev['heavy_done']} in {fmt(gev['heavy_seconds'], 1)} |",
        "",
    ]


STORM_ROUTES = {"seed": "seed room `/chat/`", "chat": "signed-in chat", "events": "`/ws/events/`",
                "job": "one job, every socket"}


def storm_section(storm: dict) -> list[str]:
    if "runs" not in storm:  # a result from before the storm bench grew sizes and the bare baseline
        return []
    lines = [
        "## Connect storms (`bench/bench_socket_storm.py`)", "",
        "N sockets opening at the same moment on one web process, from one client process; the bare",
        "`websockets` server opened by the same client in the same run is the baseline. A socket the server",
        "refuses (503 with `Retry-After`, basic/realtime/handshake_gate.py) retries as the CLI does: full",
        "jitter, never sooner than the hint. *Rate* is sockets open per second until the last one was open;",
        "CPU is the server's own, per socket open (refusals and retries included).", "",
        "| sockets | route | open | seconds | rate | vs bare | refused (503) | failed | server CPU ms/socket "
        "| bare ms/socket | client CPU s |",
        "|---:|---|---:|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    for run in storm["runs"]:
        bare = run["bare"]
        failed = ", ".join(f"{name} {count}" for name, count in run["failed"].items()) or "none"
        lines.append(
            f"| {run['sockets']:,} | {STORM_ROUTES.get(run['route'], run['route'])} | {run['opened']:,} | "
            f"{fmt(run['seconds'], 1)} | {fmt(run['rate'])} | {x(run.get('vs_bare'))} | "
            f"{run['refused_503'] + run['refused_1013']:,} | {failed} | "
            f"{fmt(run.get('server_cpu_ms_per_socket', float('nan')), 2)} | "
            f"{fmt(bare.get('server_cpu_ms_per_socket', float('nan')), 2)} | {fmt(run['client_cpu_s'], 1)} |")
    return lines + [""]


RESTARTS = {"web": "web process SIGKILLed, started again", "redis": "Redis stopped 2 s, started again"}


def restart_section(restart: dict) -> list[str]:
    lines = [
        "## Restart recovery (`bench/bench_restart.py`)", "",
        f"{restart['sockets']:,} sockets on one web process (60% on ticking jobs, 20% on a user's feed, 20% in a chat",
        "room; half back off as the console does, half as the CLI does), then a restart. *Back* is the time from",
        "the restart to each socket's first frame after it (on a new connection, for a web restart); the",
        f"promise is every socket within {restart['recover_within']} s and every job stream with no seq missing or",
        "repeated.",
        "", "| restart | all open first | back within the promise | p50 | p99 | max | refused on the way back "
        "| seqs missing | repeated |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for run in restart["runs"]:
        if not run.get("all_open"):
            lines.append(f"| {RESTARTS[run['what']]} | only {run.get('open', 0):,} | – | – | – | – | – | – | – |")
            continue
        back, streams = run["resumed"], run["job_streams"]
        refused = sum(run["refused_after_restart"].values())
        lines.append(
            f"| {RESTARTS[run['what']]} | {fmt(run['open_seconds'], 1)} s | {run['recovered']:,} of "
            f"{run['live_clients']:,} | {fmt(back.get('p50', float('nan')), 1)} s | "
            f"{fmt(back.get('p99', float('nan')), 1)} s | {fmt(back.get('max', float('nan')), 1)} s | {refused:,} | "
            f"{streams['missing']} | {streams['repeated']} |")
    return lines + [""]


def report_section(rep: dict) -> list[str]:
    naive, ours, cli = rep["naive"], rep["ours"], rep.get("sqlite3_cli")
    lines = [
        "## Report writer (`bench/bench_report.py`)", "",
        f"The students-by-age report over {rep['rows']:,} students; peak Python memory (tracemalloc) and rows/s:", "",
        "| writer | peak MiB | rows/s | memory vs naive | speed vs naive |", "|---|---:|---:|---:|---:|",
        f"| naive `list(queryset)` | {fmt(naive['peak_mib'], 1)} | {fmt(naive['rows_per_s'])} | x1.00 | x1.00 |",
        f"| ours | {fmt(ours['peak_mib'], 1)} | {fmt(ours['rows_per_s'])} | "
        f"x{ours['peak_mib'] / naive['peak_mib']:.3f} | {x(ours['rows_per_s'] / naive['rows_per_s'])} |",
    ]
    if cli:
        lines.append(f"| `sqlite3 -csv` CLI (the floor) | – | {fmt(cli['rows_per_s'])} | – | "
                     f"{x(cli['rows_per_s'] / naive['rows_per_s'])} |")
        lines += ["", f"Ours takes x{rep['ours_vs_cli']:.2f} the time of the sqlite3 CLI writing the same query."]
    lines.append("")
    if "seconds" in ours:
        lines += ["(The naive row's speed is measured with tracemalloc on; see the benchmark's output.)", ""]
    return lines


def write_docs(results: dict, docs: Path) -> Path:
    docs.mkdir(parents=True, exist_ok=True)
    page = docs / PAGE
    profile = kept_profile(page)
    meta = results.get("meta", {})
    load = meta.get("load_before") or []
    lines = [
        "# Benchmarks",
        "",
        f"Written by `make bench` (`bench/run_all.py`) on {meta.get('date') or datetime.date.today().isoformat()}"
        + (f" with `{' '.join(meta['argv'])}`" if meta.get("argv") else "") + ", in "
        f"{meta.get('total_seconds', 0) / 60:.1f} minutes.",
        "",
        f"**Machine**: {os.cpu_count()} cores ({cpu_model()}), Python {platform.python_version()}, client and",
        "servers on the same box, which is shared with other work"
        + (f" (load average {load[0]:.1f} at the start, {meta['load_after'][0]:.1f} at the end)"
           if load and meta.get("load_after") else "") + ".",
        "Absolute numbers therefore move from run to run; **every figure is compared with a baseline measured",
        "in the same run** (the bare websockets server at the same socket count, the naive pusher, the stock",
        "layer, the naive report writer, the cheapest REST-then-socket round trip), and the ratios are the result.",
        "",
        "**Run**: `make bench` (every benchmark, 8-10 minutes here; rewrites this page and its charts, keeping",
        "the Profile section), or `.venv/bin/python -m bench.run_all --sizes 100,1000 --only fanout` for a quick",
        "pass. Singly: `python -m bench.bench_fanout --sizes 100,1000,3000,5000 --messages 20 --clients 2`,",
        "`python -m bench.bench_e2e --jobs 500`, `python -m bench.bench_push`, `python -m bench.bench_socket_storm",
        "--sizes 2000,5000,10000`, `python -m bench.bench_restart --sockets 5000`, `python -m bench.bench_report",
        "1000000`. Each starts its own Redis",
        "(unless `REDIS_URL` is set) and migrates its own temporary SQLite database, so all of them work from",
        "a fresh clone.",
        "",
    ]
    for update in meta.get("updates", []):
        lines += [f"Redone since, with `{' '.join(update['argv'])}`: {', '.join(update['seconds'])}"
                  f" ({update.get('date', '')}).", ""]
    if meta.get("errors"):
        lines += [f"**Failed in this run**: {meta['errors']}.", ""]
    if results.get("fanout"):
        lines += fanout_section(results["fanout"], docs)
        lines += memory_section(results["fanout"])
    if results.get("e2e"):
        lines += e2e_section(results["e2e"])
    if results.get("push"):
        lines += push_section(results["push"])
    if results.get("storm"):
        lines += storm_section(results["storm"])
    if results.get("restart"):
        lines += restart_section(results["restart"])
    if results.get("report"):
        lines += report_section(results["report"])
    if results.get("jobs"):
        lines += jobs_section(results["jobs"], docs)
    if results.get("isolation"):
        lines += isolation_section(results["isolation"])
    lines.append(profile)
    page.write_text("\n".join(lines).rstrip() + "\n")
    return page


if __name__ == "__main__":  # re-render the page and charts from the last stored results
    import json
    import sys

    docs_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent / "docs"
    print(write_docs(json.loads((docs_dir / "benchmarks.json").read_text()), docs_dir))

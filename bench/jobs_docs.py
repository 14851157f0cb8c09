"""The bench_jobs section of docs/benchmarks.md and its chart (bench/write_docs.py calls it)."""
import math
from pathlib import Path

CHART_JOBS = "bench-jobs-throughput.png"


def _n(value: float | None, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:,.{digits}f}"


def jobs_chart(jobs: dict, docs: Path) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    levels = jobs["project"]["levels"]
    clients = [level["clients"] for level in levels]
    fig, ax = plt.subplots(figsize=(7, 4.6))
    ax.plot(clients, [b["per_s"] for b in jobs["bare"]][:len(clients)], marker="o", label="bare Celery (tasks/s)")
    for key, label in (("floor_job", "floor: a plain Django view + a row, stock Daphne (tasks/s)"),
                       ("floor_ours_job", "floor, on this project's server and handler (tasks/s)")):
        if jobs.get(key):
            ax.plot(clients, [f["per_s"] for f in jobs[key]][:len(clients)], marker="o", label=label)
    ax.plot(clients, [level["per_s"] for level in levels], marker="o", label="this project (jobs/s)")
    ax.plot(clients, [0.5 * b["per_s"] for b in jobs["bare"]][:len(clients)], linestyle=":", color="grey",
            label="goal: x0.5 bare")
    ax.set_xscale("log")
    ax.set_xticks(clients, [str(c) for c in clients])
    ax.set_xlabel("concurrent REST clients")
    ax.set_ylabel("per second")
    ax.set_ylim(bottom=0)
    ax.set_title(f"Trigger -> job end on a socket ({jobs['database']})")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2)
    fig.tight_layout()
    fig.savefig(docs / CHART_JOBS, dpi=100)
    plt.close(fig)
    return CHART_JOBS


def jobs_section(jobs: dict, docs: Path) -> list[str]:
    project = jobs["project"]
    lines = [
        "## Jobs at the speed of Celery (`bench/bench_jobs.py`)",
        "",
        f"{jobs['jobs']:,} trivial `students_by_age` jobs (100 students) per level, started with `POST /api/jobs/`",
        "by N concurrent REST clients, each job's end seen on one `/ws/events/` socket, on the stack `make run`",
        f"starts ({jobs['database']}, one gevent worker at concurrency {jobs['concurrency']}); baseline in the same",
        "run:"
        " bare Celery on the same kind of worker (`bench/bare_celery.py`: `apply_async` of a task that only",
        "INCRs a Redis counter, from as many client threads). Goal: at least x0.5 bare Celery, not falling",
        "with more clients. Beside it, in the same run: `bare.job` (the task also UPDATEs a row and stores",
        "and publishes an event; the sender INSERTs the row), and the floor of any REST trigger on the stack",
        "the project is built on (`bench/floor_web.py`: a plain Django view with no middleware or",
        "authentication that INSERTs the row and calls `apply_async` of `bare.job`), served by stock Daphne",
        "and Django's handler, and by this project's server and handler (`/incr` and `/drf` in the JSON).",
        "",
        "| clients | bare Celery tasks/s | bare.job | floor, stock | floor, ours | jobs/s | vs bare | vs floor, ours "
        "| trigger -> 202 p50 / p99 ms | trigger -> job.done p50 / p99 ms | ended |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    count = len(project["levels"])
    bare_job = jobs.get("bare_job") or [{}] * count
    floor = jobs.get("floor_job") or [{}] * count
    ours = jobs.get("floor_ours_job") or [{}] * count
    for level, bare, job, base, own in zip(project["levels"], jobs["bare"], bare_job, floor, ours, strict=False):
        vs_floor = f"x{level['per_s'] / own['per_s']:.2f}" if own.get("per_s") else "–"
        lines.append(
            f"| {level['clients']} | {_n(bare['per_s'], 1)} | {_n(job.get('per_s'), 1)} | "
            f"{_n(base.get('per_s'), 1)} | {_n(own.get('per_s'), 1)} | {_n(level['per_s'], 1)} | "
            f"x{level['per_s'] / bare['per_s']:.2f} | {vs_floor} | "
            f"{_n(level['trigger_202']['p50_ms'])} / {_n(level['trigger_202']['p99_ms'])} | "
            f"{_n(level['trigger_done']['p50_ms'])} / {_n(level['trigger_done']['p99_ms'])} | "
            f"{level['ended_on_socket']:,} of {level['started']:,} |")
    chart = jobs_chart(jobs, docs)
    if chart:
        lines += ["", f"![{chart}]({chart})"]
    if project.get("open_loop"):
        o = project["open_loop"]
        lines += ["", f"Open loop at {_n(o['offered_per_s'], 1)} starts/s (50% of the best jobs/s above), "
                  f"{o['jobs']:,} jobs: "
                  f"trigger -> 202 p50 {_n(o['trigger_202']['p50_ms'])} ms, p99 {_n(o['trigger_202']['p99_ms'])} ms "
                  "(goal 50); trigger -> job.done on the socket p50 "
                  f"{_n(o['trigger_done']['p50_ms'])} ms, p99 {_n(o['trigger_done']['p99_ms'])} ms (goal 250)."]
    if project.get("cost"):
        c = project["cost"]
        lines += ["", f"Cost per job ({c['jobs']} jobs, 10 clients): {c['db_writes_total']} row writes, "
                  f"{c['redis_trips_total']} Redis commands sent ({c['redis_in_lua_total']} more run inside scripts).",
                  "", "| what | per job |", "|---|---:|"]
        lines += [f"| row write: {name} | {n} |" for name, n in c["db_writes"].items()]
        lines += [f"| Redis: {name} | {n} |" for name, n in c["redis_trips"].items()]
    if project.get("heavy"):
        h = project["heavy"]
        lines += ["", f"Progress-heavy: {h['started']} jobs of {h['steps']:,} `ctx.progress` steps each, "
                  f"all at once: {_n(h['per_s'], 1)} jobs/s (the trivial job, as many at once: "
                  f"{_n(h['trivial_per_s_same_run'], 1)}), {h['db_writes_total']:,} row writes in all, "
                  f"{h['smooth_and_final']} of {h['started']} jobs ended on "
                  "job.done at 100% with progress never going back."]
    return lines + [""]

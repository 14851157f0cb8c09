"""Instructions a job costs, counted by valgrind (callgrind): deterministic where CPU time is not.

This shared 2-core box's speed moves by a third between runs of the same code, so `bench_jobs`
cannot see a change of a few percent. An instruction count can: it is the same from run to run to
about 1%. Counted here, in one process with no server or worker (so the platform's own code, not
Daphne's or Celery's loops): a job start through the REST view (`POST /api/jobs/`, Django's test
client: middleware, DRF, token, start budget, quota, row, message and queue marker, the 202) and its
run (lease, start, `job.started`, the report, end, `job.done`, release), each per job, from the
difference between a run of N jobs and a run of none. `--against REV` counts a git revision the
same way, in a worktree, and prints both.

    python -m bench.bench_instructions [--jobs 100] [--against REV]

Needs valgrind (Debian: `apt-get install valgrind`); about two minutes a revision.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from basic.ops import stack
from bench.common import ensure_redis, stop_redis, write_result

CHILD = Path(__file__).with_name("instructions_child.py")


def count(tree: Path, jobs: int, phase: str, workdir: Path) -> int:
    """Instructions of one child run (callgrind's total)."""
    out = workdir / f"callgrind-{phase}-{jobs}.out"
    env = {**os.environ, "JOBS_TREE": str(tree), "PYTHONHASHSEED": "0"}
    subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, str(CHILD),
                    str(jobs), phase], env=env, check=True, capture_output=True)
    for line in out.read_text().splitlines():
        if line.startswith("summary:"):
            return int(line.split()[1])
    raise RuntimeError(f"no summary in {out}")


def per_job(tree: Path, jobs: int) -> dict[str, float]:
    """Instructions per job start and per job run in `tree`, each on a database of its own."""
    workdir = Path(tempfile.mkdtemp(prefix="bench-instructions-"))
    env = {"DATABASE_URL": f"sqlite:///{workdir / 'db.sqlite3'}", "MEDIA_ROOT": str(workdir / "media")}
    os.environ.update(env)
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=tree, check=True,
                   env={**os.environ, "LISTEN_LOOPBACK_ONLY": "1"})  # the tree's own migrations
    try:
        none = count(tree, 0, "start", workdir)
        starts = count(tree, jobs, "start", workdir)
        runs = count(tree, jobs, "run", workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return {"start": (starts - none) / jobs, "run": (runs - starts) / jobs}


def worktree(rev: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix="bench-instructions-tree-")) / "tree"
    subprocess.run(["git", "worktree", "add", "--detach", str(path), rev], cwd=stack.BASE_DIR, check=True,
                   capture_output=True)
    return path


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--against", default="", help="a git revision to count the same way")
    parser.add_argument("--json", default="")
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (Debian: apt-get install valgrind); nothing counted")
        return {}
    os.environ.setdefault("LISTEN_LOOPBACK_ONLY", "1")
    ensure_redis()
    result: dict = {"jobs": args.jobs}
    trees = {"this tree": stack.BASE_DIR}
    try:
        if args.against:
            trees = {args.against: worktree(args.against), **trees}
        for name, tree in trees.items():
            result[name] = per_job(tree, args.jobs)
            print(f"{name}: {result[name]['start'] / 1e6:.3f} M instructions a job start, "
                  f"{result[name]['run'] / 1e6:.3f} M a job run", flush=True)
    finally:
        stop_redis()
        if args.against:
            subprocess.run(["git", "worktree", "remove", "--force", str(trees[args.against])], cwd=stack.BASE_DIR,
                           capture_output=True)
    if args.against:
        for phase in ("start", "run"):
            before, after = result[args.against][phase], result["this tree"][phase]
            print(f"  {phase}: x{after / before:.3f} of {args.against}")
    write_result(result, ["--json", args.json] if args.json else [])
    return result


if __name__ == "__main__":
    main(sys.argv[1:])

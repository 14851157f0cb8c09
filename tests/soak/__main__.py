"""`python -m tests.soak [--seconds N] [--sockets N] [--seed N]`: a chaos soak on a whole stack
(docs/soak.md); prints the table and exits 1 if an invariant failed."""
import argparse
import os
import sys
from dataclasses import fields
from pathlib import Path

from tests.soak.config import SoakConfig
from tests.soak.report import render
from tests.soak.run import run_soak


def main(argv: list[str] | None = None) -> int:
    defaults = {f.name: f.default for f in fields(SoakConfig) if f.name in ("seconds", "sockets")}
    parser = argparse.ArgumentParser(prog="python -m tests.soak", description=__doc__)
    parser.add_argument("--seconds", type=float, default=defaults["seconds"], help="load, warm-up included")
    parser.add_argument("--sockets", type=int, default=defaults["sockets"], help="job and chat sockets held open")
    parser.add_argument("--seed", type=int, help="the fault and load schedule (random if not given)")
    parser.add_argument("--workdir", help="keep logs and soak-result.json here (default: a temp folder, "
                                          "kept only if an invariant failed)")
    args = parser.parse_args(argv)
    os.environ.setdefault("LISTEN_LOOPBACK_ONLY", "1")
    config = SoakConfig(seconds=args.seconds, sockets=args.sockets,
                        **({"seed": args.seed} if args.seed is not None else {}))
    result = run_soak(config, Path(args.workdir) if args.workdir else None)
    render(result)
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())

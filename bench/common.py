"""Benchmark scaffolding: a private Redis when REDIS_URL is unset, Django set up, ratio printing."""
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from basic import stack

_redis = None


def ensure_redis() -> str:
    global _redis
    if not os.environ.get("REDIS_URL"):
        port = stack.free_port()
        _redis = stack.start_redis(port, Path(tempfile.mkdtemp(prefix="bench-redis-")))
        os.environ["REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
    return os.environ["REDIS_URL"]


def stop_redis() -> None:
    global _redis
    if _redis is not None:
        stack.stop(_redis)
        _redis = None
        os.environ.pop("REDIS_URL", None)


def setup_django() -> None:
    ensure_redis()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "app.settings")
    import django

    django.setup()


def best_rate(run: Callable[[], int], repeats: int = 3) -> float:
    """Operations per second: the median of `repeats` runs (each returns its operation count)."""
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        count = run()
        rates.append(count / (time.perf_counter() - started))
    return statistics.median(rates)


def report(title: str, baseline_name: str, rows: dict[str, float], unit: str) -> None:
    baseline = rows[baseline_name]
    print(f"\n{title}")
    for name, value in rows.items():
        print(f"  {name:<50} {value:>12,.0f} {unit}   x{value / baseline:,.2f} vs {baseline_name}")

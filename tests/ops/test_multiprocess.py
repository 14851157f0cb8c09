"""Multiprocess mode: counters recorded in several processes add up in one scrape."""
import os
import subprocess
import sys
import textwrap

from basic.ops import stack


def test_counts_from_several_processes_add_up(tmp_path):
    env = {**os.environ, **stack.fresh_metrics_dir(tmp_path / "metrics")}
    record = textwrap.dedent("""
        import django; django.setup()
        from basic.core import metrics
        metrics.job_started("report")
        metrics.job_finished("report", "done", 3.0)
        metrics.socket_opened("jobs")
    """)
    for _ in range(3):
        subprocess.run([sys.executable, "-c", record], cwd=stack.BASE_DIR, env=env, check=True)
    scrape = "import django; django.setup(); from basic.ops import metrics; print(metrics.render().decode())"
    text = subprocess.run([sys.executable, "-c", scrape], cwd=stack.BASE_DIR, env=env, check=True,
                          capture_output=True, text=True).stdout
    assert 'jobs_started_total{kind="report"} 3.0' in text
    assert 'jobs_runtime_seconds_count{kind="report"} 3.0' in text
    assert 'ws_connections_total{route="jobs"} 3.0' in text
    # The three processes have exited: their open sockets are gone with them.
    assert 'ws_connections_open{route="jobs"}' not in text
    files = os.listdir(tmp_path / "metrics")
    assert all("_" in name and name.rsplit("_", 1)[1].split("-")[-1][:-3].isdigit() for name in files), files

"""The garbage collector in the web process (Daphne; app/asgi.py calls both functions).

Python's defaults (a young-generation collection every 700 new container objects) are set for
short scripts. A web process allocates in bursts: 5,000 sockets opening at once. Measured on the
connect storm (bench_socket_storm, 5,000 sockets, py-spy): collections triggered inside Daphne's
per-connection bookkeeping were the largest single cost, and the thresholds below took the
server's CPU per socket opened from 1.17-1.21 ms to 0.92-0.94 ms (docs/benchmarks.md). The same
thresholds in the gevent worker changed nothing measurable on bench_jobs, so it keeps Python's.
Cycles still get collected, just in fewer, larger batches: a young collection walks at most
THRESHOLDS[0] objects, a few milliseconds.
"""
import gc

# Young collections every 50,000 new objects instead of 700; the middle and old generations by
# Python's own rule of counts, each 20 and 100 collections of the one below (10 and 10 by default).
THRESHOLDS = (50_000, 20, 100)


def tune_for_a_server() -> None:
    """Collect in larger batches (THRESHOLDS)."""
    gc.set_threshold(*THRESHOLDS)


def settle_what_is_loaded() -> None:
    """Everything loaded so far lives as long as the process: out of the collector's sight, a full
    collection no longer walks Django's and every library's objects (a pause in any request's or
    job's time). Call once the application is loaded."""
    gc.freeze()

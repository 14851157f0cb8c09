"""The garbage collector in the web process (Daphne; app/asgi.py calls both functions).

Python's defaults (a young-generation collection every 700 new container objects) are set for
short scripts. A web process allocates in bursts: 5,000 sockets opening at once. Measured on the
connect storm (bench_socket_storm, 5,000 sockets, py-spy): collections triggered inside Daphne's
per-connection bookkeeping were the largest single cost, and the thresholds below took the
server's CPU per socket opened from 1.17-1.21 ms to 0.92-0.94 ms (docs/benchmarks.md). The same
thresholds in the gevent worker changed nothing measurable on bench_jobs, so it keeps Python's.
Cycles still get collected, just in fewer, larger batches.

How large a young batch may be is set by the REST side: every request leaves ~100-300 objects in
reference cycles (DRF's view, request and serializer fields point at each other), so a young
collection frees most of what it walks. At 50,000 such a collection took 30-66 ms every 2.5 s
under 80 job starts a second, and the requests it fell on were the whole tail of trigger -> 202
(p99 41-109 ms; the server's own p99 17 ms; gc.callbacks timed each collection). At 10,000 the
pauses are a fifth as long and the p99 19 ms (bench_jobs open loop). The middle generation is
collected after 100 young ones instead of 20, so per object allocated the middle and old
generations run as often as they did, and a storm's sockets are walked no more often.
"""
import gc

# Young collections every 10,000 new objects instead of 700; the middle generation every 100 young
# collections (every 1,000,000 objects, as 50,000 x 20 did) and the old every 100 middle ones
# (Python's defaults: 10 and 10).
THRESHOLDS = (10_000, 100, 100)


def tune_for_a_server() -> None:
    """Collect in larger batches (THRESHOLDS)."""
    gc.set_threshold(*THRESHOLDS)


def settle_what_is_loaded() -> None:
    """Everything loaded so far lives as long as the process: out of the collector's sight, a full
    collection no longer walks Django's and every library's objects (a pause in any request's or
    job's time). Call once the application is loaded."""
    gc.freeze()

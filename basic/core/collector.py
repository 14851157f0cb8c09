"""The garbage collector in the web process (Daphne; app/asgi.py calls these functions).

Python's defaults (a young-generation collection every 700 new container objects) are set for
short scripts. A web process allocates in bursts: 5,000 sockets opening at once. Measured on the
connect storm (bench_socket_storm, 5,000 sockets, py-spy): collections triggered inside Daphne's
per-connection bookkeeping were the largest single cost, and the thresholds below took the
server's CPU per socket opened from 1.17-1.21 ms to 0.92-0.94 ms (docs/benchmarks.md). The same
thresholds in the gevent worker changed nothing measurable on bench_jobs, so it keeps Python's.
Cycles still get collected, just in fewer, larger batches.

How large a young batch may be depends on how many REST requests are in flight. Every request
leaves ~100-300 objects in reference cycles (DRF's view, request and serializer fields point at
each other). With few in flight, a young collection frees most of what it walks: at 50,000 such a
collection took 30-66 ms every 2.5 s under 80 job starts a second, and the requests it fell on
were the whole tail of trigger -> 202 (p99 41-109 ms against the server's own 17 ms; gc.callbacks
timed each collection). At 10,000 the pauses are a fifth as long and the p99 19 ms. With many in
flight (50-200 clients), a batch of 10,000 is mostly their live objects: each young collection
promoted ~97% of it, and the middle generation then walked them all at once, 0.9-1.0 s. So the
process collects every 10,000 (QUIET) while at most BUSY_AT requests are in flight, and every 50,000
(BUSY) past that; the middle generation runs every 1,000,000 objects allocated in both.
"""
import gc

QUIET = (10_000, 100, 100)  # young every 10,000 new objects; middle every 100 young; old every 100 middle
BUSY = (50_000, 20, 100)
BUSY_AT = 8  # REST requests in flight in this process
THRESHOLDS = QUIET  # at start
_in_flight = 0


def request_began() -> None:
    """A REST request entered the process (called on its event loop, so no lock)."""
    global _in_flight
    _in_flight += 1
    if _in_flight == BUSY_AT + 1:
        gc.set_threshold(*BUSY)


def request_ended() -> None:
    global _in_flight
    _in_flight -= 1
    if _in_flight == BUSY_AT:
        gc.set_threshold(*QUIET)


def tune_for_a_server() -> None:
    """Collect in larger batches (THRESHOLDS)."""
    gc.set_threshold(*THRESHOLDS)


def settle_what_is_loaded() -> None:
    """Everything loaded so far lives as long as the process: out of the collector's sight, a full
    collection no longer walks Django's and every library's objects (a pause in any request's or
    job's time). Call once the application is loaded."""
    gc.freeze()

"""The invariants a soak checks at the end, each a `Check` with its numbers and a few examples of
what broke it (docs/soak.md says what each one means)."""
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from tests.soak import config as limits
from tests.soak.faults import KINDS, OUTAGES, Fault
from tests.soak.load import CHAT_ECHO_TIMEOUT, FINAL_STATUSES, SNAPSHOTS, HttpRecord, Load, Stream, entry_key, is_end
from tests.soak.resources import KeySample, ProcessSample, Sample

EXAMPLES = 8


@dataclass
class Check:
    name: str
    ok: bool
    numbers: dict[str, Any]
    problems: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        shown = "; ".join(self.problems[:EXAMPLES])
        return f"{self.name}: {'ok' if self.ok else 'FAILED'} {self.numbers}" + (f" -- {shown}" if shown else "")


@dataclass
class Observed:
    """What the soak saw, gathered after the load (tests/soak/run.py)."""

    load: Load
    faults: list[Fault]
    db_jobs: dict[str, tuple[str, str, str]]  # id -> (kind, status, error)
    db_batches: dict[str, str]  # id -> status
    stream_ends: dict[str, int]  # job id -> terminal events its Redis stream holds
    chat_history: dict[str, list[tuple[str, str]]]  # room -> (entry id, text) still in Redis
    samples: dict[str, Sample]  # "idle", "warm", "end"
    keys: dict[str, KeySample]  # "warm", "end"


def end_status(frame: dict[str, Any]) -> str:
    return frame["status"] if frame["type"] in SNAPSHOTS else frame["type"].split(".", 1)[1]


def jobs_end_once(seen: Observed) -> Check:
    """Every job the load started (each 202) is terminal in the database, its watching socket saw
    exactly one end, the same one, and its Redis stream holds at most one. No job anywhere in the
    database is left active."""
    load = seen.load
    problems = []
    primaries = {(s.kind, s.subject): s for s in load.streams if s.primary}
    not_final = [j for j in load.jobs if seen.db_jobs.get(j, ("", "", ""))[1] not in FINAL_STATUSES]
    problems += [f"job {j} ({load.jobs[j].kind}) is {seen.db_jobs.get(j, ('', 'missing'))[1]}" for j in not_final]
    stuck_elsewhere = [j for j, (_, status, _) in seen.db_jobs.items() if j not in load.jobs and status not in
                       FINAL_STATUSES]
    problems += [f"job {j} (not a 202: its start was cut) is {seen.db_jobs[j][1]}" for j in stuck_elsewhere]
    ends = Counter[int]()
    disagree = 0
    for subject, status in [*((j, seen.db_jobs.get(j, ("", "", ""))[1]) for j in load.jobs),
                            *seen.db_batches.items()]:
        stream = primaries.get(("jobs" if subject in load.jobs else "batches", subject))
        if stream is None:
            continue
        count = sum(is_end(f) for f in stream.frames)
        ends[min(count, 2)] += 1
        if count != 1:
            problems.append(f"{stream.kind[:-1]} {subject}: its socket saw {count} ends "
                            f"({[f['type'] for f in stream.frames if is_end(f)]})")
        elif status in FINAL_STATUSES and end_status(stream.frames[-1]) != status:
            disagree += 1
            problems.append(f"{stream.kind[:-1]} {subject}: socket says {end_status(stream.frames[-1])}, "
                            f"database {status}")
    stuck_batches = [b for b in load.batches if seen.db_batches.get(b) not in FINAL_STATUSES]
    problems += [f"batch {b} is {seen.db_batches.get(b)}" for b in stuck_batches]
    double = [j for j, n in seen.stream_ends.items() if n > 1]
    problems += [f"job {j}: its Redis stream holds {seen.stream_ends[j]} ends" for j in double]
    statuses = Counter(seen.db_jobs.get(j, ("", "missing", ""))[1] for j in load.jobs)
    errors = Counter(seen.db_jobs[j][2] for j in load.jobs if seen.db_jobs.get(j, ("", "", ""))[1] == "failed")
    numbers = {"started": len(load.jobs), "batches": len(load.batches),
               "by_kind": dict(Counter(j.kind for j in load.jobs.values())), "statuses": dict(statuses),
               "not_terminal": len(not_final) + len(stuck_elsewhere) + len(stuck_batches),
               "sockets_one_end": ends[1], "sockets_no_end": ends[0], "sockets_two_ends": ends[2],
               "socket_db_disagree": disagree, "streams_two_ends": len(double),
               "failed_because": dict(errors.most_common(4))}
    ok = not (not_final or stuck_elsewhere or stuck_batches or ends[0] or ends[2] or disagree or double)
    return Check("jobs end exactly once", ok, numbers, problems)


def stream_problems(stream: Stream) -> tuple[list[int], list[int], list[int]]:
    """(seqs missing, seqs repeated or backwards, seqs where a snapshot stood in after the start).
    A session starts at seq 1 (opened with ?after=0), or after a first snapshot."""
    frames = stream.frames
    if not frames:
        return [], [], []
    late_snapshots = [f["seq"] for f in frames[1:] if f["type"] in SNAPSHOTS]
    start = frames[0]["seq"] + 1 if frames[0]["type"] in SNAPSHOTS else 1
    seqs = [f["seq"] for f in frames if f["type"] not in SNAPSHOTS]
    end = max([*seqs, start - 1, *late_snapshots])
    missing = sorted(set(range(start, end + 1)) - set(seqs) - set(late_snapshots))
    repeated = [b for a, b in zip(seqs, seqs[1:], strict=False) if b <= a]
    return missing, repeated, late_snapshots


FAILOVER_RESYNC_SECONDS = 30.0  # after a failover's recovery, a resume may still meet its lost tail


def resumed_across_a_failover(stream: Stream, faults: list[Fault]) -> bool:
    """Whether the session reconnected during a Redis failover (or soon after its recovery): then
    the replica it resumed from may lack the last events the old master stored (asynchronous
    replication), and the server answers with a snapshot, as README's "What survives what" says."""
    windows = [(f.at, f.window()[1] + FAILOVER_RESYNC_SECONDS) for f in faults if f.kind == "redis_failover"]
    opens = [at for at, what in stream.history if what.startswith("open")]
    return any(start <= at <= end for at in opens for start, end in windows)


def streams_gapless(seen: Observed) -> Check:
    """Every socket session on a job or batch got seq 1, 2, 3 ... to the end, each once, across
    its reconnects (`?after=<last seq>`), and every socket of one job was told the same event under
    each seq. A snapshot in place of events is a gap, unless the session resumed across a Redis
    failover (the tail an asynchronous replica lacked: counted apart, never hidden)."""
    problems, missing_total, repeated_total, snapshot_total, failover_resyncs = [], 0, 0, 0, 0
    unended = 0
    told: dict[tuple[str, str, int], set[str]] = {}
    for stream in seen.load.streams:
        missing, repeated, late = stream_problems(stream)
        if late and not missing and not repeated and resumed_across_a_failover(stream, seen.faults):
            failover_resyncs += len(late)
            late = []
        missing_total += len(missing)
        repeated_total += len(repeated)
        snapshot_total += len(late)
        if missing or repeated or late:
            problems.append(f"{stream.kind[:-1]} {stream.subject}: missing {missing[:10]}, repeated {repeated[:10]}, "
                            f"snapshots at {late[:5]} after {stream.drops} drops")
        if not stream.ended and not stream.fatal:
            unended += 1
            if stream.frames or stream.primary:
                problems.append(f"{stream.kind[:-1]} {stream.subject}: never got its end "
                                f"(last seq {stream.last_seq}, {stream.opens} opens, errors {stream.errors[-3:]})")
        elif stream.fatal:
            problems.append(f"{stream.kind[:-1]} {stream.subject}: {stream.fatal}")
        for frame in stream.frames:
            if frame["type"] not in SNAPSHOTS:
                what = f"{frame['type']}:{frame.get('progress')}:{frame.get('message')}"
                told.setdefault((stream.kind, stream.subject, frame["seq"]), set()).add(what)
    conflicts = [(key, sorted(what)) for key, what in told.items() if len(what) > 1]
    problems += [f"{kind[:-1]} {subject} seq {seq} was {what}" for (kind, subject, seq), what in conflicts]
    fatal = sum(bool(s.fatal) for s in seen.load.streams)
    numbers = {"sessions": len(seen.load.streams), "resumed": sum(s.drops > 0 for s in seen.load.streams),
               "reconnects": sum(s.drops for s in seen.load.streams),
               "events": sum(len(s.frames) for s in seen.load.streams),
               "missing": missing_total, "repeated": repeated_total, "snapshots_in_place_of_events": snapshot_total,
               "snapshots_after_a_failover": failover_resyncs,
               "seq_conflicts": len(conflicts), "without_end": unended, "refused_closed": fatal}
    ok = not (missing_total or repeated_total or snapshot_total or conflicts or unended or fatal)
    return Check("socket streams gapless", ok, numbers, problems)


def in_outage(at: float, faults: list[Fault]) -> bool:
    return any(f.kind in OUTAGES and f.window()[0] <= at <= f.window()[1] for f in faults)


def accepted_messages(seen: Observed) -> dict[str, dict[str, str]]:
    """room -> text -> entry id of every message some member got or the room's history holds."""
    accepted: dict[str, dict[str, str]] = {room: {} for room in seen.load.rooms}
    for member in seen.load.members:
        for entry, text in member.received:
            accepted[member.room][text] = entry
    for room, entries in seen.chat_history.items():
        for entry, text in entries:
            accepted.setdefault(room, {})[text] = entry
    return accepted


def missed_messages(seen: Observed, accepted: dict[str, dict[str, str]]) -> dict[str, list[int]]:
    """text -> the members (indexes) that should have got it and did not: those whose first
    message (their anchor) came before it."""
    missed: dict[str, list[int]] = {}
    for index, member in enumerate(seen.load.members):
        if not member.received:
            continue
        anchor = entry_key(member.received[0][0])
        got = {text for _, text in member.received}
        for text, entry in accepted[member.room].items():
            if entry_key(entry) > anchor and text not in got:
                missed.setdefault(text, []).append(index)
    return missed


def chat_lossless(seen: Observed) -> Check:
    """A message is accepted when the server published it: some member got it, or the room's
    history holds it. Every member, from the first message it got on (its anchor; before that it
    has nothing to resume from), gets every accepted message of its room, once, across its
    reconnects (`?after=<last id>`). A message sent outside any outage that nobody got is lost."""
    load = seen.load
    accepted = accepted_messages(seen)
    missed = missed_messages(seen, accepted)
    expected = duplicates = out_of_order = 0
    for member in load.members:
        if not member.received:
            continue
        anchor = entry_key(member.received[0][0])
        duplicates += len(member.received) - len({text for _, text in member.received})
        keys = [entry_key(entry) for entry, _ in member.received]
        out_of_order += sum(b < a for a, b in zip(keys, keys[1:], strict=False))
        expected += sum(entry_key(entry) > anchor for entry in accepted[member.room].values())
    lost_deliveries = sum(len(members) for members in missed.values())
    problems = [f"{text!r} missed by {len(members)} member(s)"
                for text, members in sorted(missed.items(), key=lambda item: -len(item[1]))]
    everyone = {text for room in accepted.values() for text in room}
    unconfirmed = [s for s in load.sent if s.text not in everyone]
    unexplained = [s for s in unconfirmed if not (in_outage(s.at, seen.faults)
                                                  or in_outage(s.at + CHAT_ECHO_TIMEOUT, seen.faults))]
    problems += [f"{s.text!r} sent outside any outage reached nobody" for s in unexplained]
    numbers = {"rooms": len(load.rooms), "members": len(load.members), "sent": len(load.sent),
               "accepted": len(everyone), "echoed": sum(s.echoed for s in load.sent),
               "unconfirmed_in_outages": len(unconfirmed) - len(unexplained), "lost_outside_outages": len(unexplained),
               "deliveries_due": expected, "delivered": expected - lost_deliveries, "lost_deliveries": lost_deliveries,
               "lost_messages": len(missed), "duplicates": duplicates, "out_of_order": out_of_order,
               "member_reconnects": sum(m.drops for m in load.members),
               "members_never_anchored": sum(not m.received for m in load.members)}
    ok = not (missed or duplicates or unexplained)
    return Check("chat loses nothing", ok, numbers, problems)


def http_clean(seen: Observed) -> Check:
    """No 5xx but 503, and a 503 only in an outage window, with a JSON reason; no unexpected 4xx
    (a cancel may find its job ended: 409); a request without an answer only in an outage."""
    records: list[HttpRecord] = seen.load.records
    classes = Counter("none" if r.status is None else f"{r.status // 100}xx" for r in records)
    problems = []
    # Judged by when the answer came: a request sent just before a fault may be answered in it.
    outside_503 = [r for r in records if r.status == 503 and not in_outage(r.at + r.took, seen.faults)]
    other_5xx = [r for r in records if r.status is not None and r.status >= 500 and r.status != 503]
    no_reason = [r for r in records if r.status == 503 and not r.json_detail]
    unexpected_4xx = [r for r in records if r.status is not None and 400 <= r.status < 500
                      and not (r.route.endswith("/cancel/") and r.status == 409)]
    no_answer = [r for r in records if r.status is None]
    no_answer_outside = [r for r in no_answer if not in_outage(r.at + r.took, seen.faults)]
    for label, found in (("503 outside an outage", outside_503), ("5xx other than 503", other_5xx),
                         ("503 without a JSON reason", no_reason), ("unexpected 4xx", unexpected_4xx),
                         ("no answer outside an outage", no_answer_outside)):
        problems += [f"{label}: {r.method} {r.route} {r.status or r.error} sent at +{r.at - seen.load.started:.1f}s, "
                     f"answered in {r.took:.1f}s: {r.body[:120]}" for r in found[:EXAMPLES]]
    refused = sum(s.refused for s in seen.load.streams) + sum(m.refused for m in seen.load.members)
    numbers = {"requests": len(records), **dict(sorted(classes.items())),
               "503_in_outages": sum(r.status == 503 for r in records) - len(outside_503),
               "503_outside": len(outside_503), "other_5xx": len(other_5xx), "503_no_reason": len(no_reason),
               "unexpected_4xx": len(unexpected_4xx), "no_answer_in_outages": len(no_answer) - len(no_answer_outside),
               "no_answer_outside": len(no_answer_outside),
               "slowest_s": round(max((r.took for r in records), default=0), 2),
               "ws_handshakes_refused": refused}
    ok = not (outside_503 or other_5xx or no_reason or unexpected_4xx or no_answer_outside)
    return Check("HTTP: no 5xx but 503 in outages", ok, numbers, problems)


def resources_flat(seen: Observed) -> Check:
    """Memory and open files of the processes alive from the warm-up to the end (never killed),
    within tests/soak/config.py's tolerance of the warm-up's; no client connection left on a web
    process or nginx once every client closed; no connection a server (Redis, a sentinel,
    PostgreSQL) holds for a client that is gone. Connections the processes open to those servers
    are pooled and may grow to the pools' high-water mark in a reconnect storm, so they are held
    flat only from the first round of faults to the end, when the run is long enough to have both."""
    warm, end, mid = seen.samples["warm"], seen.samples["end"], seen.samples.get("mid")
    problems, kept = [], 0
    for then, now in long_lived(warm, end):
        kept += 1
        if now.rss > then.rss * limits.RSS_GROWTH_FACTOR + limits.RSS_GROWTH_BYTES:
            problems.append(f"{now.role} {now.pid}: RSS {mb(then.rss)} -> {mb(now.rss)} MB")
        if now.other_fds > then.other_fds + limits.FDS_GROWTH:
            problems.append(f"{now.role} {now.pid}: open files other than connections {then.other_fds} -> "
                            f"{now.other_fds}")
    # From the first round on: processes that were there for all of it (warm-up, mid and end).
    for then, now in long_lived(mid, end) if mid else []:
        if now.identity not in warm.by_identity():
            continue
        if now.rss > then.rss * limits.PLATEAU_RSS_FACTOR + limits.PLATEAU_RSS_BYTES:
            problems.append(f"{now.role} {now.pid}: RSS {mb(then.rss)} -> {mb(now.rss)} MB since the first round")
        if now.role.startswith(SERVERS):  # the connections a server holds are its clients' (orphans: below)
            continue
        if now.fds > then.fds + limits.FDS_GROWTH:
            problems.append(f"{now.role} {now.pid}: open files {then.fds} -> {now.fds} since the first round "
                            f"({dict(then.outgoing)} -> {dict(now.outgoing)})")
    left = [p for p in end.processes if p.client_sockets]
    problems += [f"{p.role} {p.pid} still holds {p.client_sockets} client connections" for p in left]
    orphans = {server: n for server, n in end.unaccounted().items() if n > limits.UNACCOUNTED_SLACK}
    problems += [f"{server} holds {n} connections no stack process has" for server, n in orphans.items()]
    if end.rss > warm.rss * limits.RSS_GROWTH_FACTOR + limits.RSS_GROWTH_BYTES:
        problems.append(f"stack RSS {mb(warm.rss)} -> {mb(end.rss)} MB")
    web_pooled = {name: sum(n for p in sample.processes if p.role == "daphne" for _, n in p.outgoing)
                  for name, sample in seen.samples.items()}
    numbers = {"long_lived": kept, "plateau_checked": mid is not None,
               "stack_rss_mb": {name: mb(s.rss) for name, s in seen.samples.items()},
               "stack_fds": {name: s.fds for name, s in seen.samples.items()},
               "web_pooled_connections": web_pooled,
               "client_connections_left": sum(p.client_sockets for p in end.processes),
               "orphan_server_connections": sum(end.unaccounted().values())}
    return Check("memory and open files flat", not problems, numbers, problems)


SERVERS = ("redis", "sentinel", "postgres")


def long_lived(before: Sample, after: Sample) -> list[tuple[ProcessSample, ProcessSample]]:
    """The processes alive in both samples (the same pid and start time), as (then, now)."""
    earlier = before.by_identity()
    return [(earlier[p.identity], p) for p in after.processes if p.identity in earlier]


def keys_flat(seen: Observed) -> Check:
    """Redis after the load: job and batch history no more than their keys per job in the database
    (kept JOB_EVENTS_TTL_SECONDS by design); no lease or queue marker that outlives its bound; the
    other keys (queues, chat, limits, liveness) within a few of the warm-up's. TTL caches are shown."""
    warm, end = seen.keys["warm"], seen.keys["end"]
    problems = []
    history = end.families.get("job history", 0)
    if history > limits.KEYS_PER_JOB * len(seen.db_jobs):
        problems.append(f"{history} job history keys for {len(seen.db_jobs)} jobs")
    batch_history = end.families.get("batch history", 0)
    if batch_history > limits.KEYS_PER_BATCH * len(seen.db_batches):
        problems.append(f"{batch_history} batch keys for {len(seen.db_batches)} batches")
    bound = int(limits.STACK_SETTINGS["JOB_RESERVED_SECONDS"])
    lasting = [(key, ttl) for key, ttl in end.expiring if ttl < 0 or ttl > bound]
    problems += [f"{key} left with TTL {ttl}" for key, ttl in lasting]
    grown = end.families.get("other", 0) - warm.families.get("other", 0)
    if grown > limits.OTHER_KEYS_GROWTH:
        problems.append(f"other keys {warm.families.get('other', 0)} -> {end.families.get('other', 0)}: "
                        f"new {sorted(set(end.other) - set(warm.other))[:10]}")
    numbers = {"warm": dict(sorted(warm.families.items())), "end": dict(sorted(end.families.items())),
               "jobs_in_db": len(seen.db_jobs), "leases_and_markers_left": len(end.expiring),
               "outliving_their_bound": len(lasting)}
    return Check("Redis keys flat", not problems, numbers, problems)


def faults_survived(seen: Observed) -> Check:
    """Every kind of fault was injected at least once, and the stack recovered from each one."""
    injected = Counter(f.kind for f in seen.faults)
    missing = [k for k in KINDS if not injected[k]]
    failed = [f for f in seen.faults if not f.survived]
    problems = [f"never injected: {k}" for k in missing] + [f"{f.kind} {f.detail}: {f.error}" for f in failed]
    numbers = {"injected": sum(injected.values()), "survived": len(seen.faults) - len(failed),
               **{k: injected[k] for k in KINDS}}
    return Check("faults injected and survived", not problems, numbers, problems)


def all_checks(seen: Observed) -> list[Check]:
    return [faults_survived(seen), jobs_end_once(seen), streams_gapless(seen), chat_lossless(seen),
            http_clean(seen), resources_flat(seen), keys_flat(seen)]


def mb(size: int) -> int:
    return round(size / 2**20)

"""Every open socket is a file: the web process's open-file limit, raised at start, and the reserve
kept below it for what the process opens besides client sockets (basic/realtime/server.py refuses
new sockets with a 503 past the limit less that reserve)."""
import logging
import resource

logger = logging.getLogger(__name__)

# File descriptors kept for what a process opens besides client sockets (Redis, the database,
# reports, logs): past RLIMIT_NOFILE less this, new sockets are refused with a 503, so accept()
# never fails with EMFILE, which Twisted answers by leaving the client hanging in the backlog.
FD_RESERVE = 128


def open_files_limit() -> int:
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


LOW_OPEN_FILES = 4096


def raise_open_files_limit() -> int:
    """Every open socket is a file: take the soft RLIMIT_NOFILE up to the hard limit, and say so at
    start if even that is low (past it, less FD_RESERVE, sockets are refused with a 503)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            logger.warning("could not raise the open-file limit from %s", soft)
    if soft < LOW_OPEN_FILES:
        logger.warning("open-file limit %s: this process takes at most %s sockets before refusing new ones "
                       "with a 503; raise it (ulimit -n, or nofile in compose/systemd)", soft, soft - FD_RESERVE)
    return soft

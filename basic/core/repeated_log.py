"""One log line for a failure that thousands of sockets hit at once, not one each."""
import logging
import time


class RepeatedWarning:
    """Log a warning the first time, then at most once every `seconds` with how many were left out.

    While Redis was down, each job socket's resync logged its own warning and traceback every
    second: 1,800 tracebacks in 2 s with 3,000 sockets open, burying the one line that said what
    was wrong. The error's type and text stay; the traceback is left out (it is always the same).
    """

    def __init__(self, logger: logging.Logger, message: str, seconds: float = 10.0) -> None:
        self.logger, self.message, self.seconds = logger, message, seconds
        self._quiet_until = 0.0
        self._left_out = 0

    def warning(self, error: BaseException, where: str = "") -> None:
        """`where`: what hit it this time (e.g. the request), said in the line that is logged."""
        now = time.monotonic()
        if now < self._quiet_until:
            self._left_out += 1
            return
        left_out, self._left_out = self._left_out, 0
        self._quiet_until = now + self.seconds
        more = f" (and {left_out} more in the last {self.seconds:.0f} s)" if left_out else ""
        at = f" ({where})" if where else ""
        self.logger.warning("%s%s: %s: %s%s", self.message, at, type(error).__name__, error, more)

"""autobahn's debug formatting made lazy; `install()` once, when the server module loads.

autobahn builds the arguments of its debug lines whether or not anyone logs them: every new
socket's settings pretty-printed, and the coloured names and values (`hltype`, `hlval`, through
click's `style`) at each connect, handshake, chunk of data received and close. In a connect storm
the first was a tenth of Daphne's time, the second 4-6% (py-spy, 5,000 sockets at once). Here each
becomes an object that formats itself only when a log line is written.
"""
from typing import Any

import autobahn.twisted.websocket as autobahn_twisted
import autobahn.websocket.protocol as autobahn_protocol
from autobahn import util as autobahn_util


class LazyPformat:
    """pprint.pformat, run only if the text is asked for."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def __str__(self) -> str:
        from pprint import pformat

        return pformat(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


class LazyHighlight:
    """autobahn's `hltype(obj)` or `hlval(value, ...)`, run only if the text is asked for."""

    __slots__ = ("args", "highlight", "kwargs")

    def __init__(self, highlight: Any, *args: Any, **kwargs: Any) -> None:
        self.highlight, self.args, self.kwargs = highlight, args, kwargs

    def __str__(self) -> str:
        return self.highlight(*self.args, **self.kwargs)

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


def _lazy(highlight: Any) -> Any:
    def lazy(*args: Any, **kwargs: Any) -> LazyHighlight:
        return LazyHighlight(highlight, *args, **kwargs)
    return lazy


def install() -> None:
    autobahn_protocol.pformat = LazyPformat
    # The one caller that returns the text itself gets it formatted.
    autobahn_protocol.Timings.__str__ = lambda self: str(LazyPformat(self._timings))  # type: ignore[method-assign]
    for module in (autobahn_protocol, autobahn_twisted):
        module.hltype = _lazy(autobahn_util.hltype)  # type: ignore[attr-defined]
        module.hlval = _lazy(autobahn_util.hlval)  # type: ignore[attr-defined]

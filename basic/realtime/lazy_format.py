"""autobahn's debug formatting made lazy; `install()` once, when the server module loads."""
from typing import Any

import autobahn.websocket.protocol as autobahn_protocol


class LazyPformat:
    """pprint.pformat, run only if the text is asked for: autobahn formats every new socket's
    settings for a debug line nobody logs, a tenth of Daphne's time in a connect storm (py-spy)."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def __str__(self) -> str:
        from pprint import pformat

        return pformat(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


def install() -> None:
    autobahn_protocol.pformat = LazyPformat
    # The one caller that returns the text itself gets it formatted.
    autobahn_protocol.Timings.__str__ = lambda self: str(LazyPformat(self._timings))  # type: ignore[method-assign]

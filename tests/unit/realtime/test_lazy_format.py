"""autobahn's debug-line arguments are formatted only when a line is written (basic/realtime/lazy_format.py)."""
import autobahn.twisted.websocket as autobahn_twisted
import autobahn.websocket.protocol as autobahn_protocol
from autobahn import util as autobahn_util

import basic.realtime.server  # noqa: F401  (installs the lazy formatting, as the server does)


def test_highlighting_waits_until_the_text_is_asked_for(monkeypatch):
    styled = []
    highlight = autobahn_util.hl
    monkeypatch.setattr(autobahn_util, "hl", lambda *args, **kwargs: styled.append(args) or highlight(*args, **kwargs))
    method = autobahn_twisted.WebSocketServerProtocol.dataReceived
    names = [autobahn_twisted.hltype(method), autobahn_protocol.hltype(method)]
    values = [autobahn_twisted.hlval(42), autobahn_protocol.hlval("peer", color="red")]
    assert styled == []  # what every connect, chunk and close cost before, for lines nobody logs
    assert [str(name) for name in names] == [autobahn_util.hltype(method)] * 2
    assert f"{values[0]}|{values[1]}" == autobahn_util.hlval(42) + "|" + autobahn_util.hlval("peer", color="red")
    assert styled


def test_pretty_printing_waits_too():
    settings = {"b": [1, 2], "a": "x" * 100}
    lazy = autobahn_protocol.pformat(settings)
    from pprint import pformat
    assert f"{lazy}" == pformat(settings)

"""A socket's outlet, from the consumer's side: when its group messages may go straight to its
socket (basic/realtime/wire.py `Outlet`), and when they must go through its handler instead."""
from collections.abc import Callable
from typing import Any


class GroupOutlet:
    """Mixed into the socket base (base.py), whose state it reads (`closed`, `_cleaning_up`, ...).
    A subclass that sends group messages as they are says how (`outlet_text`), and what must hold
    first (`outlet_allowed`, `outlet_feed`); it calls `refresh_outlet()` whenever that changes.
    The base opens the outlet once the socket takes group messages, and closes it as the socket
    closes, refuses or is cleaned up."""

    _outlet: Any = None  # the socket's Outlet, once it takes group messages
    _refusing = False  # accepted only to say why it is closed (`reject`): no outlet
    # What a group message becomes on this socket in the common case: a plain function shared by
    # every socket of the class (a staticmethod) giving the frame's text, or None for a message
    # that must go through the socket's handler. None here: the class has no outlet.
    outlet_text: Callable[[dict[str, Any]], str | None] | None = None

    def _start_taking_group_messages(self) -> None:
        """From now on group messages are handled as they come; the common case goes out
        through the socket's outlet, where the server and the channel layer have them."""
        self._taking_group_messages = True
        text_of = type(self).outlet_text
        if text_of is None or self._refusing or self._cleaning_up or self.closed:
            return
        make = getattr(self._outer_send, "outlet", None) if hasattr(self, "_outer_send") else None
        open_outlet = getattr(getattr(self, "channel_layer", None), "open_outlet", None)
        if make is None or open_outlet is None or not getattr(self, "channel_name", None):
            return
        outlet = make(text_of, self.dispatch_group_message)  # type: ignore[attr-defined]
        if outlet is None:  # a TLS or compressed socket: every frame its own
            return
        self._outlet = outlet
        self.refresh_outlet()
        open_outlet(self.channel_name, outlet)

    def outlet_feed(self) -> Any:
        """The JobFeed whose seq rule the outlet keeps (basic/realtime/job_feed.py), if any."""
        return None

    def outlet_allowed(self) -> bool:
        """Whether the subclass has nothing under way that a group message must wait for (a
        resume, a catch-up): only then do messages pass its handler on the outlet."""
        return True

    def refresh_outlet(self) -> None:
        """Open or close the socket's outlet for what holds now; called whenever that changes."""
        outlet = self._outlet
        if outlet is not None:
            outlet.feed = self.outlet_feed()
            outlet.open_if(self._taking_group_messages and not self.closed and not self._cleaning_up
                           and not self._refusing and self.outlet_allowed())

"""A base for Django middleware that runs sync or async to match the stack it sits in, so none of ours
costs a thread hop under Daphne (docs/design.md trap 8). Subclasses write `__call__` and `__acall__`."""
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction


class SyncAndAsyncMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

"""Django's message middleware, with the message storage made only when something uses messages.

Django's builds the storage for every request (importing MESSAGE_STORAGE by name each time) and asks
it to update every response: 2% of the web process's CPU per REST job start, where nothing reads or
writes a message (py-spy, issue 19). A storage never made has nothing to store, so skipping its
update changes nothing; the admin's and the pages' messages work as before.
"""
from typing import Any

from django.contrib.messages.middleware import MessageMiddleware
from django.contrib.messages.storage import default_storage
from django.http import HttpRequest, HttpResponseBase
from django.utils.functional import SimpleLazyObject, empty


class LazyMessageMiddleware(MessageMiddleware):
    def process_request(self, request: HttpRequest) -> None:
        request._messages = SimpleLazyObject(lambda: default_storage(request))  # type: ignore[attr-defined]

    def process_response(self, request: HttpRequest, response: HttpResponseBase) -> Any:
        messages = getattr(request, "_messages", None)
        if isinstance(messages, SimpleLazyObject) and messages._wrapped is empty:
            return response
        return super().process_response(request, response)

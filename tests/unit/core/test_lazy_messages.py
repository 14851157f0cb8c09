"""The message middleware makes its storage only when a message is used (basic/core/lazy_messages.py):
a request that uses none builds none and its response is untouched; one that adds a message stores it
for the next request, which reads it, as with Django's own middleware."""
from django.contrib import messages
from django.contrib.messages.storage.base import BaseStorage
from django.contrib.sessions.middleware import SessionMiddleware
from django.http import HttpResponse
from django.test import RequestFactory
from django.utils.functional import empty

from basic.core.lazy_messages import LazyMessageMiddleware


def _through(view, cookies=None):
    request = RequestFactory().get("/", HTTP_HOST="localhost")
    request.COOKIES.update(cookies or {})
    response = SessionMiddleware(lambda r: LazyMessageMiddleware(view)(r))(request)
    return request, response


def test_a_request_that_uses_no_message_builds_no_storage():
    request, response = _through(lambda r: HttpResponse("ok"))
    assert request._messages._wrapped is empty
    assert "messages" not in response.cookies


def test_a_message_added_is_stored_and_read_on_the_next_request():
    def add(request):
        messages.success(request, "Saved.")
        return HttpResponse("ok")

    request, response = _through(add)
    assert isinstance(request._messages._wrapped, BaseStorage)
    assert response.cookies["messages"].value
    seen = []

    def read(request):
        seen.extend(str(message) for message in messages.get_messages(request))
        return HttpResponse("ok")

    _through(read, cookies={"messages": response.cookies["messages"].value})
    assert seen == ["Saved."]

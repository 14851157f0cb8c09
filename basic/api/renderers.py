"""The API's JSON renderer, which cannot fail on a string: an answer that would hold one UTF-8
can't encode (a lone surrogate, echoed from input or read back from storage) is sent with U+FFFD
in its place, never as a 500 HTML page from a UnicodeEncodeError (issue 22)."""
from typing import Any

from rest_framework import renderers

from basic.core import untrusted_json


class JsonRenderer(renderers.JSONRenderer):
    def render(self, data: Any, accepted_media_type: str | None = None,
               renderer_context: dict[str, Any] | None = None) -> bytes:
        try:
            return super().render(data, accepted_media_type, renderer_context)
        except (UnicodeEncodeError, RecursionError):  # the rare answer that needs it pays for the copy
            return super().render(untrusted_json.scrub(data), accepted_media_type, renderer_context)

"""Request bodies read so that no bytes can break them: whatever arrives is parsed or refused with
a 400 JSON `{"detail": …}`, never a 500 (issue 22: `[` * 3000 was a RecursionError on every JSON
endpoint, sign-in included).

- JSON goes through basic/core/untrusted_json.py: UTF-8 only, MAX_DEPTH levels, no lone surrogates.
- Forms and multipart bodies are decoded by Django, with replacement characters; a charset that can't
  decode that way (idna, punycode) or isn't text at all (rot13, base64) is refused, by the DRF
  parsers and, for Django's own forms (sign-in, admin), by `DeclaredCharsetMiddleware`.
- `ParserNegotiation` gives these parsers to every DRF view, even one that names DRF's own
  (ObtainAuthToken, behind `POST /api/auth/token/`, does).
"""
import codecs
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from rest_framework import parsers
from rest_framework.exceptions import ParseError
from rest_framework.negotiation import DefaultContentNegotiation

from basic.core import untrusted_json
from basic.core.middleware import SyncAndAsyncMiddleware

BAD_CHARSET = "The body declares a charset that cannot decode text; send UTF-8."


class JsonParser(parsers.JSONParser):
    """JSON bodies (`application/json`), always as UTF-8; the charset parameter is ignored."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: dict[str, Any] | None = None) -> Any:
        # DRF hands a JSONParser the whole body (bounded by DATA_UPLOAD_MAX_MEMORY_SIZE) as BytesIO.
        try:
            return untrusted_json.loads(stream.read())
        except untrusted_json.Unreadable as refused:
            raise ParseError(refused.detail, code=refused.code) from None


def _decoded(parse: Callable[[], Any]) -> Any:
    """Run a form parser; a body its charset cannot decode is a 400, not a UnicodeError."""
    try:
        return parse()
    except (UnicodeError, LookupError):
        raise ParseError(BAD_CHARSET, code="bad_charset") from None


class FormParser(parsers.FormParser):
    def parse(self, stream: Any, media_type: str | None = None, parser_context: dict[str, Any] | None = None) -> Any:
        return _decoded(lambda: super(FormParser, self).parse(stream, media_type, parser_context))


class MultiPartParser(parsers.MultiPartParser):
    def parse(self, stream: Any, media_type: str | None = None, parser_context: dict[str, Any] | None = None) -> Any:
        return _decoded(lambda: super(MultiPartParser, self).parse(stream, media_type, parser_context))


# DRF's parsers and what reads the same media type safely (DEFAULT_PARSER_CLASSES names these).
SAFE_PARSERS: dict[type[parsers.BaseParser], type[parsers.BaseParser]] = {
    parsers.JSONParser: JsonParser, parsers.FormParser: FormParser, parsers.MultiPartParser: MultiPartParser}


class ParserNegotiation(DefaultContentNegotiation):
    """DRF's negotiation, with DRF's stock parsers swapped for the safe ones above: a view (ours
    or a library's) that sets `parser_classes` to DRF's own still cannot be broken by a body."""

    def select_parser(self, request: Any, parsers: list[Any]) -> Any:
        parser = super().select_parser(request, parsers)
        safe = SAFE_PARSERS.get(type(parser))
        return safe() if safe is not None else parser


def charset_decodes_text(charset: str) -> bool:
    """Whether Django can decode a form in `charset`: a text codec that takes errors="replace"."""
    try:
        if not codecs.lookup(charset)._is_text_encoding:  # type: ignore[attr-defined]  # rot13, base64, zlib
            return False
        b"\xff".decode(charset, "replace")  # idna and punycode refuse error handlers
    except (LookupError, UnicodeError, ValueError, TypeError):
        return False
    return True


class DeclaredCharsetMiddleware(SyncAndAsyncMiddleware):
    """A body whose Content-Type names a charset Django cannot decode forms in is refused (400)
    before anything reads `request.POST` (the CSRF check does, for every sign-in form): Django
    raises UnicodeDecodeError or LookupError there, a 500. A charset Python doesn't know, Django
    ignores, and so does this. Sync and async, so it costs no thread hop under Daphne."""


    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self.__acall__(request)
        return refuse_bad_charset(request) or self.get_response(request)

    async def __acall__(self, request: HttpRequest) -> Any:
        return refuse_bad_charset(request) or await self.get_response(request)


def refuse_bad_charset(request: HttpRequest) -> HttpResponse | None:
    charset = request.content_params.get("charset") if request.content_params else None
    if not charset or not _known(charset) or charset_decodes_text(charset):
        return None
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": BAD_CHARSET}, status=400)
    return HttpResponse(BAD_CHARSET, status=400, content_type="text/plain; charset=utf-8")


def _known(charset: str) -> bool:
    try:
        codecs.lookup(charset)
    except LookupError:
        return False
    return True

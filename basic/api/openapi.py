"""The OpenAPI schema's error answers, documented once for every operation where they can happen.

Every API error is JSON (basic/api/errors.py): `{"detail": "…"}`, or field errors on a 400. Instead of
listing them on each view, `ApiAutoSchema` (REST_FRAMEWORK's DEFAULT_SCHEMA_CLASS) adds them by rule:

| Code | When | Operations |
|---|---|---|
| 400 | invalid body or query parameter | those with a request body or list parameters |
| 401 | not signed in, or a bad token | every one (a wrong `Authorization` header fails anywhere) |
| 403 | not allowed, e.g. a session write without its CSRF token | every one |
| 404 | no such object, or not yours | those with path parameters |
| 413 | the body is over DATA_UPLOAD_MAX_MEMORY_SIZE | those with a request body |
| 429 | throttled, with `Retry-After` | those with a throttle (and sign-in) |
| 503 | the database, Redis or the job queue is unreachable | every one |

409 and other codes particular to one endpoint stay on its view (`@extend_schema(responses={409:
None})`); a `None` (or a description only) for an error code gets the error body here.
"""
from typing import Any

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import ResolvedComponent
from drf_spectacular.settings import spectacular_settings
from rest_framework.permissions import AllowAny

ERROR_SCHEMA = {
    "type": "object",
    "description": "Every error: what went wrong and, where it helps, what to do.",
    "properties": {"detail": {"type": "string"}},
    "required": ["detail"],
}
VALIDATION_ERROR_SCHEMA = {
    "type": "object",
    "description": (
        "Invalid input: each bad field (or query parameter) names its messages, nested like the input "
        "(e.g. `{\"params\": {\"url\": [\"…\"]}}`); `non_field_errors` for the input as a whole; or only "
        "`detail` when the body could not be read at all (malformed JSON, a bad multipart body)."
    ),
    "properties": {
        "detail": {"type": "string"},
        "non_field_errors": {"type": "array", "items": {"type": "string"}},
    },
    "additionalProperties": {
        "anyOf": [
            {"type": "array", "items": {}},
            {"type": "object", "additionalProperties": {}},
            {"type": "string"},
        ]
    },
}
DESCRIPTIONS = {
    400: "Invalid input, named by field.",
    401: "Not signed in, or the token or session is not valid.",
    403: "Signed in but not allowed (a session write without its CSRF token, or staff-only).",
    404: "No such object, or not yours (the two are indistinguishable).",
    409: "Conflicts with the object's current state; `detail` says why.",
    413: "The request body is too large.",
    429: "Too many requests; retry after `Retry-After` seconds.",
    503: "The database, Redis or the job queue is unreachable; try again shortly.",
}
RETRY_AFTER = {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait before retrying."}}
BODY_METHODS = ("POST", "PUT", "PATCH")


class ApiAutoSchema(AutoSchema):
    def _get_response_bodies(self, direction: str = "response") -> dict[str, Any]:
        responses = super()._get_response_bodies(direction)
        if direction != "response":
            return responses
        for code in self.error_codes():
            responses.setdefault(str(code), {"description": DESCRIPTIONS.get(code, "")})
        for key, response in responses.items():
            code = int(key) if key.isdigit() else 0
            if code >= 400 and "content" not in response:
                response["description"] = response.get("description") or DESCRIPTIONS.get(code, "")
                response["content"] = {"application/json": {"schema": self._error_body(code)}}
                if code == 429:
                    response["headers"] = RETRY_AFTER
        return dict(sorted(responses.items()))

    def error_codes(self) -> set[int]:
        """The error codes this operation can answer with, by the rules in the module's docstring."""
        codes = {503}
        if self.view.get_authenticators():
            codes |= {401, 403}
        elif not all(isinstance(permission, AllowAny) for permission in self.view.get_permissions()):
            codes |= {403}
        if "{" in self.path:
            codes.add(404)
        if self.method in BODY_METHODS and self.get_request_serializer() is not None:
            codes |= {400, 413}
        if self.method == "GET" and self._is_list_view() and self._get_paginator():
            codes.add(400)
        if self._throttled():
            codes.add(429)
        return codes

    def _throttled(self) -> bool:
        from basic.accounts.login_throttle import ThrottledObtainAuthToken

        return bool(self.view.get_throttles()) or isinstance(self.view, ThrottledObtainAuthToken)

    def _error_body(self, code: int) -> dict[str, str]:
        name, schema = ("ValidationError", VALIDATION_ERROR_SCHEMA) if code == 400 else ("Error", ERROR_SCHEMA)
        component = ResolvedComponent(name=name, type=ResolvedComponent.SCHEMA, schema=schema, object=name)
        self.registry.register_on_missing(component)
        return component.ref


def name_kind_enums(result: dict[str, Any], generator: Any, **kwargs: Any) -> dict[str, Any]:
    """A postprocessing hook, run before drf-spectacular's enum hook: each kind's own `kind` value
    (the discriminator of the JobStart and JobStartForm shapes) becomes one enum component named
    after the kind, e.g. PageFetchKindEnum. drf-spectacular would otherwise find one choice set
    in two components, warn and name it by a hash (KindBf6Enum)."""
    suffix = spectacular_settings.ENUM_SUFFIX
    for schema in result.get("components", {}).get("schemas", {}).values():
        kind = schema.get("properties", {}).get("kind") if isinstance(schema, dict) else None
        if not isinstance(kind, dict) or len(kind.get("enum") or []) != 1:
            continue
        value = kind["enum"][0]
        name = "".join(part.title() for part in str(value).split("_")) + "Kind" + suffix
        component = ResolvedComponent(name=name, type=ResolvedComponent.SCHEMA,
                                      schema={"type": "string", "enum": [value]}, object=name)
        generator.registry.register_on_missing(component)
        schema["properties"]["kind"] = component.ref
    return result

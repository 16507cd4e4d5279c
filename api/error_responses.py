"""The error answers every operation can give, declared in the OpenAPI document with their schema
and an example: added to the generated document in one place, by rule (what the route has: a key
check, path ids, a body), so a new route is covered without anyone remembering to."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

ERROR_SCHEMA = "Error"

_ERROR: dict[str, Any] = {
    "title": ERROR_SCHEMA,
    "type": "object",
    "required": ["detail"],
    "properties": {
        "detail": {
            "description": "what went wrong and what to send instead: a sentence, or for a "
            "malformed request FastAPI's list (`loc` names the parameter, `msg` says why)",
            "anyOf": [
                {"type": "string"},
                {"type": "array", "items": {"$ref": "#/components/schemas/ValidationError"}},
            ],
        }
    },
}

_RETRY_AFTER = {
    "Retry-After": {
        "description": "seconds to wait before trying again",
        "schema": {"type": "integer"},
    }
}

# status → (when, example detail, headers)
ERRORS: dict[int, tuple[str, Any, dict[str, Any]]] = {
    401: ("no API key, or one that is unknown, revoked or expired",
          "a valid API key is required: Authorization: Bearer <key>", {}),
    403: ("the key's role may not use this route, or may not act on this object",
          "a manager key may not use this endpoint", {}),
    404: ("no such id, or one outside the key's scope (the same answer for both)",
          "no bin with id 'b-17'", {}),
    408: ("the request body stalled (nothing of it for BINWATCH_API_STALL_TIMEOUT_S)",
          "the client sent none of its request body for 30 s; cut off", {}),
    409: ("the object is not in a state that allows this action",
          "alert 12 is already acknowledged", {}),
    413: ("the request body is over the size limit",
          "request body over the limit of 65536 bytes", {}),
    422: ("a parameter or the body is malformed or out of range",
          [{"type": "json_invalid", "loc": ["body"],
            "msg": "NaN is not a JSON number; send a finite number"}], {}),
    429: ("the key's rate limit is exceeded", "rate limit of 20 requests/s for this key exceeded",
          _RETRY_AFTER),
    503: ("the API is full (retry after Retry-After), or InfluxDB, the registry or the photo "
          "store is unavailable",
          "the API is serving as many requests as it can; retry after 1 s", _RETRY_AFTER),
}  # fmt: skip


def codes_for(path: str, operation: dict[str, Any]) -> set[int]:
    """The error statuses an operation can answer, from what it has."""
    if not path.startswith("/api/"):
        return {503}
    codes = {401, 403, 422, 429, 503}
    if "{" in path or "requestBody" in operation:
        codes.add(404)  # an id in the path, or a bin id in the body
    if "requestBody" in operation:
        codes |= {408, 413}
    if "409" in operation.get("responses", {}):
        codes.add(409)
    return codes


def declare_errors(document: dict[str, Any]) -> None:
    """Adds (or completes) the error responses of every operation of `document`, in place."""
    document.setdefault("components", {}).setdefault("schemas", {})[ERROR_SCHEMA] = _ERROR
    for path, item in document["paths"].items():
        for operation in item.values():
            responses = operation.setdefault("responses", {})
            for code in sorted(codes_for(path, operation)):
                when, example, headers = ERRORS[code]
                declared = responses.setdefault(str(code), {"description": when})
                content = declared.get("content", {}).get("application/json", {})
                ref = content.get("schema", {}).get("$ref", "")
                if ref and not ref.endswith(("/HTTPValidationError", f"/{ERROR_SCHEMA}")):
                    continue  # a body of its own, e.g. /health's 503 says what is degraded
                declared["content"] = {
                    "application/json": {
                        "schema": {"$ref": f"#/components/schemas/{ERROR_SCHEMA}"},
                        "example": {"detail": example},
                    }
                }
                if headers:
                    declared["headers"] = headers


def with_declared_errors(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """`app.openapi`, completed by `declare_errors` once, when first generated."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            declare_errors(generate())
        return generate()

    return openapi

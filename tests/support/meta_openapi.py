"""Check Graph requests and responses against Meta's own OpenAPI description (OAS 3.1, v23.0).

Validation runs openapi-core against a SUBSET spec holding only the one path under test: the full
spec has 15 single-segment paths (`/{Version}/{Phone-Number-ID}`, `/{Version}/{TEMPLATE_ID}`, ...)
that collide, and a router would pick the wrong one (reference meta-graph-api.md section 8, quirk 1).
For the same reason a request to a colliding path names the kind of node it addresses:
`validate_request(request, node="phone_number")`. Unambiguous paths need no hint.

Path placeholders only match numeric ids, as Graph object ids are; `/debug_token` is therefore
not mistaken for `/{Business-ID}`.

Violations come back as short strings naming the place and the broken rule ("body.pin: pattern
'^[0-9]{6}$'"), never the offending value, so a PIN under test cannot leak into a test report.

API (the simulator's tests use it too):
    operation_for(method, path, *, node=None) -> operationId | None
    validate_request(request, *, node=None) -> list[str]
    validate_response(request, response, *, node=None) -> list[str]
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Iterator
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import httpx
import yaml
from jsonschema.exceptions import ValidationError as SchemaError
from jsonschema_path import SchemaPath
from openapi_core.datatypes import RequestParameters
from openapi_core.validation.request.exceptions import (
    MissingRequestBody,
    ParameterValidationError,
    SecurityValidationError,
)
from openapi_core.validation.request.validators import (
    V31RequestBodyValidator,
    V31RequestParametersValidator,
    V31RequestSecurityValidator,
)
from openapi_core.validation.response.exceptions import HeaderValidationError
from openapi_core.validation.response.validators import V31ResponseValidator
from werkzeug.datastructures import Headers, ImmutableMultiDict

from waguard.meta.errors import redact

ROOT = Path(__file__).resolve().parents[2]
SPEC_NAME = "business-messaging-api_v23.0.yaml"
SPEC_SHA256 = "c7148d5e2aeff32f2effc3d3557795d7eddd07abf8b017c9e40e86bb3312c116"
SPEC_CANDIDATES = (
    ROOT / "tests" / "samples" / "meta-openapi" / SPEC_NAME,
    ROOT.parent / "shared" / "meta-openapi" / SPEC_NAME,  # CI clones the repo with shared/ beside it
)
SERVER = "https://graph.facebook.com"
DEFAULT_VERSION = "v23.0"
METHODS = ("get", "post", "delete", "put", "patch")
_VERSIONED = re.compile(r"^(?:.*?)/(v[0-9]+\.[0-9]+)(/.*)?$")
_GRAPH_ID = re.compile(r"[0-9]+")  # used with fullmatch

# Friendly names for the node a colliding path addresses -> the spec's path-parameter names.
# Kinds mapped to an empty set have no path of their own in the spec.
NODE_KINDS: dict[str, frozenset[str]] = {
    "phone_number": frozenset({"Phone-Number-ID"}),
    "template": frozenset({"TEMPLATE_ID"}),
    "waba": frozenset({"WABA-ID", "WhatsApp-Business-Account-ID"}),
    "business": frozenset({"Business-ID"}),
    "user": frozenset({"User-ID"}),
    "app": frozenset({"Application-ID"}),
    "business_user": frozenset(),
    "system_user": frozenset(),
}


class NotInSpec(LookupError):
    """The request's method and path match no operation in Meta's spec."""


class AmbiguousPath(LookupError):
    """The path matches several colliding spec paths; pass `node=` to say which node it addresses."""


# ---- loading ----------------------------------------------------------------------------------------


def spec_file() -> Path:
    """Where the spec is: $WAGUARD_META_OPENAPI, a vendored copy under tests/samples, or ../shared beside the repo."""
    env = os.environ.get("WAGUARD_META_OPENAPI")
    for candidate in ([Path(env)] if env else []) + list(SPEC_CANDIDATES):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"Meta's OpenAPI spec {SPEC_NAME} not found: copy it to {SPEC_CANDIDATES[0]} "
        "or set WAGUARD_META_OPENAPI"
    )


@lru_cache(maxsize=1)
def load_spec() -> dict[str, Any]:
    """The parsed spec, once per test session; a JSON copy under .pytest_cache skips YAML parsing."""
    raw = spec_file().read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if digest != SPEC_SHA256:
        raise RuntimeError(f"{SPEC_NAME} has sha256 {digest}, expected {SPEC_SHA256}: not the reviewed copy")
    cache = ROOT / ".pytest_cache" / "waguard" / f"meta-openapi-{digest[:16]}.json"
    if cache.is_file():
        cached: dict[str, Any] = json.loads(cache.read_bytes())
        return cached
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    # Through JSON so YAML-only types (dates) become the strings OpenAPI means.
    spec: dict[str, Any] = json.loads(json.dumps(yaml.load(raw, Loader=loader), default=str))
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(spec))
        os.replace(tmp, cache)  # atomic: parallel sessions never read half a file
    except OSError:
        pass  # a read-only checkout only loses the speed-up
    return spec


@cache
def _subset(template: str, method: str) -> SchemaPath:
    """A spec with one path and one operation, so nothing can route the request elsewhere."""
    full = load_spec()
    item = {k: v for k, v in full["paths"][template].items() if k in ("parameters", "servers", method)}
    subset = {k: v for k, v in full.items() if k not in ("paths", "webhooks")}
    subset["servers"] = [{"url": SERVER}]
    subset["paths"] = {template: item}
    return SchemaPath.from_dict(subset)


# ---- finding the operation --------------------------------------------------------------------------


def _split(path: str) -> tuple[str, list[str]]:
    """(version, segments after it) of a request path, with or without the version and query."""
    path = path.split("?", 1)[0]
    match = _VERSIONED.match(path)
    if match:
        return match.group(1), [s for s in (match.group(2) or "").split("/") if s]
    return DEFAULT_VERSION, [s for s in path.split("/") if s]


def _candidates(method: str, segments: list[str]) -> Iterator[tuple[str, str, str | None]]:
    """(template, operationId, first id parameter) of every spec operation the path fits."""
    method = method.lower()
    for template, item in load_spec()["paths"].items():
        parts = template.strip("/").split("/")
        if parts[0] != "{Version}" or len(parts) - 1 != len(segments) or method not in item:
            continue
        first_param: str | None = None
        for part, seg in zip(parts[1:], segments, strict=True):
            if part.startswith("{"):
                if not _GRAPH_ID.fullmatch(seg):
                    break
                first_param = first_param or part[1:-1]
            elif part != seg:
                break
        else:
            yield template, item[method].get("operationId", f"{method} {template}"), first_param


def _resolve(method: str, path: str, node: str | None) -> tuple[str, str] | None:
    found = list(_candidates(method, _split(path)[1]))
    if node is not None:
        names = NODE_KINDS.get(node, frozenset({node}))
        found = [c for c in found if c[2] in names]
    if len(found) > 1:
        options = ", ".join(f"{c[2]} ({c[1]})" for c in found)
        raise AmbiguousPath(f"{method.upper()} {path} matches colliding spec paths: {options}; pass node=")
    return (found[0][0], found[0][1]) if found else None


def operation_for(method: str, path: str, *, node: str | None = None) -> str | None:
    """The spec's operationId for a call, or None when the spec does not describe it.

    `path` may carry the version (`/v23.0/123/deregister`) or not (`/123/deregister`).
    Raises AmbiguousPath for a colliding path without `node`.
    """
    found = _resolve(method, path, node)
    return found[1] if found else None


# ---- adapters: httpx -> openapi-core's request/response protocols -----------------------------------


class _Request:
    def __init__(self, request: httpx.Request) -> None:
        version, segments = _split(request.url.path)
        self.host_url = SERVER  # the subset spec has one server; where the request went does not matter
        self.path = "/" + "/".join([version, *segments])
        self.method = request.method.lower()
        self.body = request.content or None
        self.content_type = request.headers.get("content-type", "")
        self.parameters = RequestParameters(
            query=ImmutableMultiDict(list(request.url.params.multi_items())),
            header=Headers(list(request.headers.multi_items())),
            cookie=ImmutableMultiDict(),
        )


class _Response:
    def __init__(self, response: httpx.Response) -> None:
        self.status_code = response.status_code
        self.data = response.content
        self.content_type = response.headers.get("content-type", "")
        self.headers = Headers(list(response.headers.multi_items()))


# ---- validation -------------------------------------------------------------------------------------


def _spec_for(request: httpx.Request, node: str | None) -> SchemaPath:
    found = _resolve(request.method, request.url.path, node)
    if found is None:
        raise NotInSpec(f"{request.method} {request.url.path} is not an operation in Meta's spec")
    return _subset(found[0], request.method.lower())


def validate_request(request: httpx.Request, *, node: str | None = None) -> list[str]:
    """Violations of the spec by this request (security, parameters, body); empty means valid.

    Raises NotInSpec when the spec has no such operation, AmbiguousPath when `node` is needed.
    """
    spec, adapted = _spec_for(request, node), _Request(request)
    errors: list[Exception] = []
    for validator in (V31RequestSecurityValidator, V31RequestParametersValidator, V31RequestBodyValidator):
        # An absent optional body is fine (openapi-core's combined validator agrees; this one alone not).
        errors.extend(e for e in validator(spec).iter_errors(adapted) if type(e) is not MissingRequestBody)
    return [line for err in errors for line in _describe(err, "request")]


def validate_response(
    request: httpx.Request, response: httpx.Response, *, node: str | None = None
) -> list[str]:
    """Violations of the spec by this response to `request` (status, headers, body); empty means valid."""
    spec = _spec_for(request, node)
    errors = V31ResponseValidator(spec).iter_errors(_Request(request), _Response(response))
    return [line for err in errors for line in _describe(err, "response")]


def _describe(err: BaseException, side: str) -> list[str]:
    if isinstance(err, SecurityValidationError):
        return ["security: no valid bearerAuth credentials (Authorization: Bearer <token>)"]
    if isinstance(err, ParameterValidationError):
        where = f"{err.location}.{err.name}"
    elif isinstance(err, HeaderValidationError):
        where = f"header.{err.name}"
    else:
        where = "body"
    cause = err.__cause__
    schema_errors: Iterable[SchemaError] = getattr(cause, "schema_errors", None) or ()
    lines = [_schema_line(f"{side}.{where}", e) for e in schema_errors]
    if lines:
        return lines
    if isinstance(err, ParameterValidationError | HeaderValidationError):
        # Cast/deserialise messages quote the value: name the failure only.
        return [f"{side}.{where}: {type(err).__name__}" + (f" ({type(cause).__name__})" if cause else "")]
    detail = f"{type(err).__name__}: {err}" + (f" ({type(cause).__name__}: {cause})" if cause else "")
    return [f"{side}.{where}: {redact(detail)}"]


def _schema_line(where: str, e: SchemaError) -> str:
    """One schema violation as place + rule; rules name properties and patterns, never values."""
    place = where + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in e.absolute_path)
    if e.validator in ("required", "additionalProperties", "unevaluatedProperties"):
        return f"{place}: {e.message}"
    return f"{place}: {e.validator} {e.validator_value!r}"

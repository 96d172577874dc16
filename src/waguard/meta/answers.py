"""Reading Graph answers as pure functions: success, one node, a list page, an error, a model.

The counterpart of `wire.py` (which builds requests). Every error names fields, keys and shapes,
never a value Meta sent: an answer may hold a token.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from waguard.meta.errors import MetaError, MetaUnexpectedResponse, error_class_for
from waguard.meta.usage import as_int, retry_after_seconds

M = TypeVar("M", bound=BaseModel)


def _shape(body: Any) -> str:
    """Describe a body by its keys or type only: a body may hold a token, so never its values."""
    if isinstance(body, dict):
        return "an object with keys " + (", ".join(sorted(map(str, body))) or "(none)")
    return f"a JSON {type(body).__name__}"


def expect_success(body: Any, path: str) -> None:
    """A mutating call succeeded only if Meta answered `{"success": true}`."""
    if not (isinstance(body, dict) and body.get("success") is True):
        raise MetaUnexpectedResponse(f'expected {{"success": true}}, got {_shape(body)}', path=path)


def expect_object(body: Any, path: str) -> dict[str, Any]:
    """A read of one node must answer a JSON object."""
    if not isinstance(body, dict):
        raise MetaUnexpectedResponse(f"expected a JSON object, got {_shape(body)}", path=path)
    return body


def page(body: Any, path: str) -> tuple[list[dict[str, Any]], str | None]:
    """Items of one list page and the cursor of the next, or None on the last page.

    Graph marks the last page by leaving out `paging.next`; we follow `paging.cursors.after` with
    our own request rather than the `next` URL, so the bearer token only ever goes to base_url.
    """
    if not isinstance(body, dict) or not isinstance(body.get("data"), list):
        raise MetaUnexpectedResponse(f"expected a list page with `data`, got {_shape(body)}", path=path)
    items = [i for i in body["data"] if isinstance(i, dict)]
    paging: dict[str, Any] = body["paging"] if isinstance(body.get("paging"), dict) else {}
    cursors: dict[str, Any] = paging["cursors"] if isinstance(paging.get("cursors"), dict) else {}
    after = cursors.get("after")
    return items, (after if paging.get("next") and isinstance(after, str) and after else None)


def decode_error(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    path: str | None = None,
    secrets: Sequence[str] = (),
) -> MetaError:
    """Turn a failed Graph answer into the matching `MetaError` subclass.

    A body without Meta's envelope still yields an error classified by HTTP status; its text is not
    copied (it could be anything, e.g. a proxy page echoing the URL).
    """
    try:
        envelope = json.loads(body) if body else None
    except ValueError:
        envelope = None
    err = envelope.get("error") if isinstance(envelope, dict) else None
    if not isinstance(err, dict):
        cls = error_class_for(status, None)
        message = f"HTTP {status} without a Graph error envelope"
        return cls(message, http_status=status, path=path, retry_after=retry_after_seconds(headers))
    code, subcode = as_int(err.get("code")), as_int(err.get("error_subcode"))
    is_transient = err.get("is_transient") is True
    data = err.get("error_data")
    if isinstance(data, str):  # some Graph errors carry error_data as a JSON string
        try:
            data = json.loads(data)
        except ValueError:
            data = None
    details = data.get("details") if isinstance(data, dict) else None
    cls = error_class_for(status, code, subcode, is_transient)

    def text(key: str) -> str | None:
        value = err.get(key)
        return value if isinstance(value, str) else None

    return cls(
        text("message"),
        http_status=status,
        code=code,
        subcode=subcode,
        fbtrace_id=text("fbtrace_id"),
        type=text("type"),
        user_title=text("error_user_title"),
        user_msg=text("error_user_msg"),
        details=details if isinstance(details, str) else None,
        path=path,
        retry_after=retry_after_seconds(headers),
        secrets=secrets,
    )


def parse(model: type[M], data: Any, path: str) -> M:
    """Validate an answer; the error names fields and problems, never the values Meta sent."""
    try:
        return model.model_validate(data)
    except ValidationError as err:  # raised below, without the context that holds Meta's values
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'answer'}: {e['type']}" for e in err.errors())
    raise MetaUnexpectedResponse(f"answer does not fit {model.__name__} ({problems})", path=path)

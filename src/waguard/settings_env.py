"""How `WAGUARD_` variables map onto the settings model, so a bad one is named, never a traceback.

pydantic-settings ignores an unknown `WAGUARD_` variable in the environment (a typo such as
`WAGUARD_VAULT_ADDR` silently keeps the default) and raises a bare `SettingsError`, naming neither
the variable nor the fix, when a list or section value is not JSON. Here: the valid names are derived
from the model, unknown ones are reported with the closest valid name, and undecodable values are
left for validation, whose error carries the field's location and so the variable's name.
"""

from __future__ import annotations

import difflib
import os
import types
import typing
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, BeforeValidator, ValidationError

PREFIX = "WAGUARD_"
NESTING = "__"

# Variables with waguard's prefix that are not settings, and who reads them.
NOT_SETTINGS = {
    "WAGUARD_HOME",  # prefect.yaml's pull step: the directory the deployment runner works in
    "WAGUARD_META_OPENAPI",  # tests/support: where Meta's OpenAPI description is
}


def _http_url(value: str) -> str:
    # The value is not echoed: a URL may carry credentials in its userinfo.
    parts = urlsplit(value)
    try:
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number in range
    except ValueError:
        raise ValueError("has an invalid port") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host, e.g. http://127.0.0.1:8200")
    return value


def _comma_separated(value: object) -> object:
    # A JSON list was already decoded by the source; a string left here is a comma-separated list.
    if not isinstance(value, str):
        return value
    if value.lstrip().startswith("["):
        raise ValueError('write a comma-separated list (meta/,slack/) or a JSON list (["meta/", "slack/"])')
    return [item.strip() for item in value.split(",") if item.strip()]


HttpUrlStr = Annotated[str, AfterValidator(_http_url)]
"""An http(s) URL checked at start, kept a plain string for the clients that take one."""

StrList = Annotated[list[str], BeforeValidator(_comma_separated)]
"""A list of strings written `a,b,c` or as a JSON list."""


def keep_undecodable(source: Any) -> Any:
    """Make a pydantic-settings env source pass a value that is not JSON on to validation.

    The source would raise `SettingsError` naming only the top-level field; validation instead
    reports the full location (and the list type above accepts comma-separated strings).
    """
    decode = source.decode_complex_value

    def lenient(field_name: str, field: Any, value: Any) -> Any:
        try:
            return decode(field_name, field, value)
        except ValueError:
            return value

    source.decode_complex_value = lenient
    return source


def _model_of(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """(the model class inside an annotation, whether it is a mapping open to any key)."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _model_of(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        found = [_model_of(arg) for arg in typing.get_args(annotation) if arg is not type(None)]
        return next((m for m in found if m[0] or m[1]), (None, False))
    if origin is not None and isinstance(origin, type) and issubclass(origin, Mapping):
        return None, True
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    return None, False


def variable_names(model: type[BaseModel], prefix: str = PREFIX) -> tuple[set[str], set[str]]:
    """(every valid variable name, prefixes under which any name is valid: mapping fields)."""
    names: set[str] = set()
    open_prefixes: set[str] = set()
    for name, field in model.model_fields.items():
        env = f"{prefix}{name.upper()}"
        names.add(env)  # a section may also be given whole, as JSON
        sub, is_mapping = _model_of(field.annotation)
        if sub is not None:
            sub_names, sub_open = variable_names(sub, env + NESTING)
            names |= sub_names
            open_prefixes |= sub_open
        elif is_mapping:
            open_prefixes.add(env + NESTING)
    return names, open_prefixes


def variable_for(loc: tuple[Any, ...]) -> str:
    """The variable that sets the value at a validation error's location."""
    parts = [str(p) for p in loc if isinstance(p, str) and not p.startswith("function-")]
    name = NESTING.join(p.upper() for p in parts)
    # An unknown name from the .env file arrives as an extra field still carrying the prefix.
    return name if name.startswith(PREFIX) else PREFIX + (name or "*")


def given_variables(env_file: str | os.PathLike[str] | None) -> Iterator[tuple[str, str]]:
    """(name, where) of every `WAGUARD_` variable in the environment and in the .env file."""
    for name in os.environ:
        if name.upper().startswith(PREFIX):
            yield name, "the environment"
    if env_file and Path(env_file).is_file():
        from dotenv import dotenv_values

        for name in dotenv_values(env_file):
            if name.upper().startswith(PREFIX):
                yield name, str(env_file)


def unknown_variables(model: type[BaseModel], env_file: str | os.PathLike[str] | None) -> list[str]:
    """One line per `WAGUARD_` variable that sets nothing, with the closest valid name."""
    names, open_prefixes = variable_names(model)
    lines = []
    for name, where in given_variables(env_file):
        upper = name.upper()
        if upper in names or upper in NOT_SETTINGS or any(upper.startswith(p) for p in open_prefixes):
            continue
        close = difflib.get_close_matches(upper, sorted(names), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}?" if close else "; `waguard config` lists the settings"
        lines.append(f"{name} (set in {where}): not a waguard setting{hint}")
    return lines


def describe(err: ValidationError, env_file: str | os.PathLike[str] | None, already: set[str]) -> list[str]:
    """One line per bad value naming the variable and where it is set; `already` names are skipped."""
    where: dict[str, str] = {}
    for name, place in given_variables(env_file):
        where.setdefault(name.upper(), place)  # the environment wins over .env, as in pydantic-settings
    lines = []
    for e in err.errors():
        env = variable_for(e["loc"])
        if e["type"] == "extra_forbidden" and env in already:
            continue
        field = ".".join(str(p) for p in e["loc"] if isinstance(p, str) and not p.startswith("function-"))
        msg = e["msg"].removeprefix("Value error, ")
        place = f", set in {where[env]}" if env in where else ""
        lines.append(f"{env} ({field}{place}): {msg}" if field else msg)
    return lines

"""The one error type of config checking, and how a pydantic ValidationError becomes one.

Every config mistake is one line, "<file>: <dotted.key>: <what is wrong>", where what is wrong is "must be
<what the schema expects>, got <the value given>", an unknown key with a close match ("did you mean ..."),
or the reason a check gave. What is expected is read from the model's JSON schema (the one `evograd schema`
prints), so the message and the schema cannot disagree.
"""
from __future__ import annotations

import difflib
import functools
import re
import warnings
from typing import Any

from ..core.validation import ParameterError


class ConfigError(ParameterError):
    """A config (or a --set override) that cannot run; the message names the file and the dotted key.

    Raised inside a model's validator, `key` is relative to that model (pydantic knows where it sits)."""

    def __init__(self, reason: str, file: str | None = None, key: str | None = None):
        self.reason, self.file, self.key = reason, file, key
        super().__init__(": ".join(str(p) for p in (file, key, reason) if p))


def join(key: str | None, k: Any) -> str:
    """"a.b" + "c" -> "a.b.c"; a list index is written "a.b[2]"."""
    if not key:
        return str(k)
    return f"{key}{k}" if str(k).startswith("[") else f"{key}.{k}"


def validated(model, data: Any, key: str = "", hints: dict[str, str] | None = None):
    """model.model_validate(data), its first error raised as a ConfigError under `key` (the data's place in
    the config); `hints` explains keys the model leaves out on purpose ("the runner sets it from seeds")."""
    from pydantic import ValidationError

    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise config_error(exc.errors(include_url=False)[0], model, data, key, hints or {}) from None


def config_error(err: dict, model, data: Any, key: str, hints: dict[str, str]) -> ConfigError:
    schema = _schema(model)
    parts = _path(data, err["loc"], schema)
    where = functools.reduce(join, parts, key)
    cause = (err.get("ctx") or {}).get("error")
    if isinstance(cause, ConfigError):  # a model's own check: its reason, under its (relative) key
        return ConfigError(cause.reason, key=join(where, cause.key) if cause.key else where or None)
    if err["type"] == "missing":
        return ConfigError("missing (required)", key=where)
    if err["loc"] and err["loc"][-1] == "[key]":
        return ConfigError(f"must be a mapping with string keys, got the key {err['input']!r}",
                           key=functools.reduce(join, parts[:-1], key) or None)
    if err["type"] in ("extra_forbidden", "invalid_key"):
        k = err["loc"][-1]
        if len(parts) == 1 and str(k) in hints:
            return ConfigError(f"{k!r} cannot be set here: {hints[str(k)]}", key=where)
        shown = list(_at(schema, parts[:-1]).get("properties", {}))
        close = difflib.get_close_matches(str(k), shown, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return ConfigError(f"unknown key {k!r}{hint}; accepted: {', '.join(shown)}", key=where)
    if err["type"] in ("value_error", "assertion_error"):
        return ConfigError(f"{cause or err['msg']}, got {err['input']!r}", key=where or None)
    node = _at(schema, parts)
    what = expected(node, schema) if node else err["msg"].lower().replace("input should be ", "")
    return ConfigError(f"must be {what}, got {err['input']!r}", key=where or None)


def _path(data: Any, loc: tuple, schema: dict) -> list[str]:
    """The config keys in a pydantic location; union members' tags ("int", "list[int]") are not keys."""
    parts, node, s = [], data, schema
    for k in loc:
        if isinstance(node, (list, tuple)) and isinstance(k, int) and 0 <= k < len(node):
            part, node = f"[{k}]", node[k]
        elif (isinstance(node, dict) and k in node) or _child(schema, s, str(k)):  # given, or left out
            part, node = str(k), node.get(k) if isinstance(node, dict) else None
        else:
            continue
        parts.append(part)
        s = _child(schema, s, part) or {}
    return parts


@functools.lru_cache(maxsize=64)
def _schema(model) -> dict:
    with warnings.catch_warnings():  # a default that JSON cannot hold is left out of the schema, quietly
        warnings.simplefilter("ignore")
        return model.model_json_schema()


def _deref(schema: dict, s: dict) -> dict:
    return schema.get("$defs", {}).get(s["$ref"].rsplit("/", 1)[-1], {}) if "$ref" in s else s


def _child(schema: dict, s: dict, part: str) -> dict | None:
    """The schema of `part` (a key, or "[i]") inside the schema node `s`; None if it has none."""
    for option in [s, *s.get("anyOf", [])]:
        option = _deref(schema, option)
        if part.startswith("[") and isinstance(option.get("items"), dict):
            return _deref(schema, option["items"])
        if not part.startswith("[") and option.get("type") == "object":
            child = option.get("properties", {}).get(part, option.get("additionalProperties"))
            if isinstance(child, dict):
                return _deref(schema, child)
    return None


def _at(schema: dict, parts: list[str]) -> dict:
    """The schema node at a key path ({} where there is none)."""
    s: dict | None = schema
    for part in parts:
        s = _child(schema, s, part) if s is not None else None
    return s or {}


def expected(s: dict, schema: dict) -> str:
    """A JSON schema node in words: "an int >= 1 or null", "one of 'linear', 'mlp'", "a mapping"."""
    s = _deref(schema, s)
    options = [_deref(schema, x) for x in s.get("anyOf") or s.get("oneOf") or []]
    if options:
        kinds = list(dict.fromkeys(expected(x, schema) for x in options if x.get("type") != "null"))
        return " or ".join(kinds) + (" or null" if any(x.get("type") == "null" for x in options) else "")
    if "const" in s or "enum" in s:
        return repr(s["const"]) if "const" in s else "one of " + ", ".join(map(repr, s["enum"]))
    kind = s.get("type")
    if kind in ("integer", "number"):
        return _range("an int" if kind == "integer" else "a float", s)
    if kind == "array":
        item = re.sub(r"^an? (int|float|bool|string|non-empty string|mapping)\b", r"\1s",
                      expected(s.get("items", {}), schema))
        return f"{'a non-empty list' if s.get('minItems') else 'a list'} of {item}"
    return {"boolean": "a bool", "object": "a mapping", "null": "null",
            "string": "a non-empty string" if s.get("pattern") or s.get("minLength") else "a string"
            }.get(kind, "a value")


def _range(kind: str, s: dict) -> str:
    low = s.get("minimum", s.get("exclusiveMinimum"))
    high = s.get("maximum", s.get("exclusiveMaximum"))
    if low is not None and high is not None:
        lo, hi = "(" if "exclusiveMinimum" in s else "[", ")" if "exclusiveMaximum" in s else "]"
        return f"{kind} in the range {lo}{low}, {high}{hi}"
    if low is not None:
        return f"{kind} {'>' if 'exclusiveMinimum' in s else '>='} {low}"
    if high is not None:
        return f"{kind} {'<' if 'exclusiveMaximum' in s else '<='} {high}"
    return kind

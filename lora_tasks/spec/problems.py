"""pydantic's validation errors rephrased: one Problem per key, naming the key, the bad value
and the fix (a close match for a typo, the field's own description otherwise)."""

from __future__ import annotations

import difflib
import re
from typing import Any

from pydantic import BaseModel, ValidationError

from lora_tasks.errors import Problem
from lora_tasks.spec.schema import JobSpec


def problems_from(exc: ValidationError, data: dict[str, Any]) -> list[Problem]:
    """Turn pydantic's errors into one Problem per key, merging the branches of a union."""
    grouped: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for err in exc.errors():
        path, extra = _field_path(JobSpec, tuple(err["loc"]))
        if err["type"] == "extra_forbidden":
            path = path + extra[:1]
        grouped.setdefault(path, []).append(err)
    return [_problem(path, errs, data) for path, errs in grouped.items()]


def _field_path(model: type[BaseModel], loc: tuple[Any, ...]) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """Split an error location into the real key path and pydantic's union-branch tags."""
    path: list[Any] = []
    current: Any = model
    for i, part in enumerate(loc):
        if isinstance(part, int) and path:
            path.append(part)
            continue
        field = _field_by_alias(current, part) if isinstance(current, type) else None
        if field is None:
            return tuple(path), loc[i:]
        path.append(part)
        annotation = field.annotation
        current = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    return tuple(path), ()


def _field_by_alias(model: type[BaseModel], key: Any) -> Any:
    for name, field in model.model_fields.items():
        if (field.alias or name) == key:
            return field
    return None


def _model_at(path: tuple[Any, ...]) -> type[BaseModel] | None:
    current: type[BaseModel] = JobSpec
    for part in path:
        field = _field_by_alias(current, part)
        if field is None or not (isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)):
            return None
        current = field.annotation
    return current


def _dotted(path: tuple[Any, ...]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _value_at(data: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def _problem(path: tuple[Any, ...], errors: list[dict[str, Any]], data: dict[str, Any]) -> Problem:
    key = _dotted(path)
    first = errors[0]
    if first["type"] == "extra_forbidden":
        parent = _model_at(path[:-1])
        allowed = [f.alias or n for n, f in parent.model_fields.items()] if parent else []
        close = difflib.get_close_matches(str(path[-1]), allowed, n=1, cutoff=0.6)
        hint = f"did you mean '{close[0]}'? " if close else ""
        return Problem(key, f"unknown key; {hint}allowed keys here: {', '.join(allowed)}",
                       f"rename it to '{close[0]}'" if close else "remove it or use one of the allowed keys")
    if first["type"] == "missing":
        return Problem(key, "is required but missing", f"add it, {_description(path)}")
    value = _value_at(data, path)
    reasons = "; or ".join(dict.fromkeys(_clean_msg(e) for e in errors))
    if _model_at(path) is not None:
        if first["type"] == "value_error":  # a cross-field check names its key first: "key: ..."
            field, _, rest = reasons.partition(": ")
            message, _, fix = rest.rpartition("; ")
            return Problem(_dotted((*path, *field.split("."))), message, fix)
        return Problem(key, f"must be a mapping of keys, got {type(value).__name__}",
                       "indent the section's keys under it")
    shown = f"{value!r} ({type(value).__name__})" if value is not None else "the section"
    literal = _close_literal(value, errors)
    fix = f"did you mean '{literal}'? Allowed: " if literal else "use "
    return Problem(key, f"got {shown}: {reasons}", f"{fix}{_description(path) or 'see the README'}")


def _clean_msg(err: dict[str, Any]) -> str:
    return re.sub(r"^(Value error|Assertion failed), ", "", err["msg"])


def _close_literal(value: Any, errors: list[dict[str, Any]]) -> str | None:
    for err in errors:
        expected = (err.get("ctx") or {}).get("expected")
        if err["type"] == "literal_error" and isinstance(value, str) and expected:
            options = re.findall(r"'([^']*)'", expected)
            close = difflib.get_close_matches(value, options, n=1, cutoff=0.6)
            if close:
                return close[0]
    return None


def _description(path: tuple[Any, ...]) -> str:
    fields_path = tuple(p for p in path if not isinstance(p, int))
    parent = _model_at(fields_path[:-1]) if fields_path else None
    field = _field_by_alias(parent, fields_path[-1]) if parent and fields_path else None
    return (field.description or "") if field else ""

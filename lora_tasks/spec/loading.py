"""Reading a job spec: YAML with a safe loader, a size limit and duplicate keys refused, ``--set``
overrides, and validation into a JobSpec whose errors name every problem at once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from lora_tasks.errors import JobSpecError, Problem
from lora_tasks.spec.problems import problems_from
from lora_tasks.spec.schema import JobSpec

MAX_SPEC_BYTES = 256 * 1024
"""A job spec is a few hundred bytes; anything this large is a mistake or an attack."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that refuses a key given twice (PyYAML silently keeps the last)."""


def _construct_unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} appears twice; keep one", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping)


def _check_size(size: int, source: str) -> None:
    if size > MAX_SPEC_BYTES:
        raise JobSpecError(
            [Problem("(file)", f"is {size} bytes, over the {MAX_SPEC_BYTES} byte limit",
                     "a job spec is a short YAML file; remove embedded data")],
            source,
        )


def read_yaml_text(text: str, source: str) -> dict[str, Any]:
    """Parse YAML (or JSON, a subset) safely; the document must be a mapping."""
    _check_size(len(text.encode()), source)
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        raise JobSpecError([Problem("(file)", f"is not valid YAML: {exc}", "fix the syntax at that line")],
                           source) from None
    if not isinstance(data, dict):
        raise JobSpecError(
            [Problem("(file)", f"must be a mapping of sections, got {type(data).__name__}",
                     "start with 'model_config:' and 'training_config:'")],
            source,
        )
    return data


def read_spec_file(path: Path) -> str:
    """A job spec file's text, within the size limit and UTF-8."""
    try:
        _check_size(path.stat().st_size, str(path))
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise JobSpecError([Problem("(file)", "does not exist", "pass the path of your job YAML")], str(path)) from None
    except UnicodeDecodeError as exc:
        raise JobSpecError([Problem("(file)", f"is not UTF-8 text ({exc.reason})", "save it as UTF-8")],
                           str(path)) from None


def read_yaml_file(path: Path) -> dict[str, Any]:
    return read_yaml_text(read_spec_file(path), str(path))


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``section.key=value`` overrides (value parsed as YAML) to a raw spec mapping."""
    merged = _deep_copy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise JobSpecError([Problem(item, "is not of the form section.key=value",
                                        "write e.g. training_config.max_steps=50")], "--set")
        *parents, leaf = key.split(".")
        node = merged
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise JobSpecError([Problem(key, f"'{part}' is not a section", "override a key inside a section")],
                                   "--set")
        node[leaf] = yaml.safe_load(raw)
    return merged


def _deep_copy(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _deep_copy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_deep_copy(v) for v in data]
    return data


def parse_job_spec(data: dict[str, Any], source: str = "job spec") -> JobSpec:
    """Validate a raw mapping into a JobSpec, or raise JobSpecError listing every problem."""
    try:
        spec = JobSpec.model_validate(data)
    except ValidationError as exc:
        raise JobSpecError(problems_from(exc, data), source) from None
    spec._source = source
    return spec


def load_job_spec(path: str | Path, overrides: list[str] | None = None) -> JobSpec:
    path = Path(path)
    data = apply_overrides(read_yaml_file(path), overrides or [])
    return parse_job_spec(data, str(path))

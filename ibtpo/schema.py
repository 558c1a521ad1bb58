"""The configuration schema and its helpers: read it, resolve a section, fill in its defaults, and
check values against it with errors that name the key.

``pipelines/schemas/config.schema.yaml`` is the one place that declares every key, its type and its
default. This module imports nothing from ``ibtpo``, so both the config (``ibtpo.config``) and the
components that build from one section of it (the eval spec, ``ibtpo.eval.tasks.resolve_spec``; the
trainer's settings, ``TrainSettings.of``) can use it without importing each other.
"""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path

import jsonschema
import yaml

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "pipelines" / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    """A configuration that breaks the schema or a cross-check; the message names the file and key."""


@functools.lru_cache(maxsize=1)
def _schema_cached() -> str:
    return json.dumps(yaml.safe_load(SCHEMA_PATH.read_text()))


def schema() -> dict:
    """The configuration schema (pipelines/schemas/config.schema.yaml): the one place that declares
    every key, its type and its default."""
    return json.loads(_schema_cached())


def deref(node: dict, root: dict) -> dict:
    """``node`` with a local ``$ref`` (``#/$defs/<name>``) resolved; the node's other keys win."""
    if "$ref" not in node:
        return node
    target = root
    for part in node["$ref"].lstrip("#/").split("/"):
        target = target[part]
    return {**deref(target, root), **{k: v for k, v in node.items() if k != "$ref"}}


def apply_defaults(value, node: dict, root: dict | None = None):
    """Fill the schema's ``default`` entries into ``value`` in place (and return it): a missing
    property with a default gets a copy of it, then every present property (or entry of an
    ``additionalProperties`` mapping) is filled from its own schema. Objects that are absent and
    have no default stay absent (``probe``, ``policy.sft``)."""
    root = root if root is not None else node
    node = deref(node, root)
    if not isinstance(value, dict):
        return value
    props = node.get("properties", {})
    for key, sub in props.items():
        sub = deref(sub, root)
        if key not in value and "default" in sub:
            value[key] = copy.deepcopy(sub["default"])
    extra = node.get("additionalProperties")
    for key, v in value.items():
        if key in props:
            apply_defaults(v, props[key], root)
        elif isinstance(extra, dict):
            apply_defaults(v, extra, root)
    return value


def section_schema(path: str) -> dict:
    """The schema of one section, ``train`` or ``method_defs.*.loss`` (``*``: any entry of a mapping),
    with the root's ``$defs`` so that references resolve."""
    root = schema()
    node = root
    for part in path.split("."):
        node = deref(node, root)
        node = node["additionalProperties"] if part == "*" else node["properties"][part]
    return {"$defs": root.get("$defs", {}), **deref(node, root)}


def fill_section(path: str, values: dict | None = None, origin: str | None = None) -> dict:
    """``values`` of section ``path`` checked against the schema and completed with its defaults (a
    new dict). What builds a component straight from a section (``TrainSettings.of``) calls this, so
    a library user gets the DAG's defaults and errors."""
    values = copy.deepcopy(values or {})
    node = section_schema(path)
    raise_schema_errors(jsonschema.Draft202012Validator(node).iter_errors(values), origin or path, prefix=path)
    return apply_defaults(values, node)


def raise_schema_errors(errors, origin: str, prefix: str = "") -> None:
    """Raise one :class:`ConfigError` listing (up to ten of) a validator's ``errors``, each under its key
    path (``prefix`` first) and, for an unknown key, with the allowed ones; nothing when there are none."""
    errors = sorted(errors, key=lambda e: [str(p) for p in e.path])
    if not errors:
        return
    lines = []
    for e in errors[:10]:
        key = ".".join([prefix] * bool(prefix) + [str(p) for p in e.absolute_path]) or "<top level>"
        msg = e.message
        if e.validator == "additionalProperties":
            allowed = sorted(e.schema.get("properties", {}))
            msg += f" (allowed keys: {allowed})" if allowed else ""
        lines.append(f"  {key}: {msg}")
    raise ConfigError(f"{origin}: invalid configuration:\n" + "\n".join(lines))

"""Reading params: a YAML file or preset name, dotted overrides, validation, errors naming file and field.

Also the way back: :func:`params_from_json` (what a KFP task is given) and
:func:`write_resolved` (the resolved params written beside a stage's outputs).
"""

from __future__ import annotations

import copy
import difflib
import json
import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from zonda.files import write_text_atomic
from zonda.params.base import ParamsError
from zonda.params.root import Params
from zonda.params.secrets import MASK, is_secret_key, mask_secrets


RESOLVED_PARAMS_FILENAME = "params.resolved.yaml"


def _masked_override(item: str) -> str:
    """An override as shown in messages: ``key=***`` for a secret-looking key, secrets inside a value masked."""
    key, sep, text = item.partition("=")
    if not sep:
        return item
    if is_secret_key(key.strip().rsplit(".", 1)[-1]):
        return f"{key}={MASK}"
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return item
    masked = mask_secrets(value)
    if masked == value:
        return item
    return f"{key}=" + yaml.safe_dump(masked, default_flow_style=True, width=10**6).strip()


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Applies ``a.b.c=value`` overrides; values are parsed as YAML (``[500,850]``, ``3e-4``, ``null``)."""
    out = copy.deepcopy(raw)
    for item in overrides:
        if "=" not in item:
            raise ParamsError(f"override {item!r}: expected dotted.key=value")
        key, _, text = item.partition("=")
        key = key.strip()
        if not re.fullmatch(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*", key):
            raise ParamsError(f"override {item!r}: {key!r} is not a dotted field path")
        try:
            value = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError as exc:
            raise ParamsError(f"override {item!r}: value is not valid YAML: {exc}") from None
        if isinstance(value, float) is False and isinstance(value, str) and re.fullmatch(r"[-+]?\d*\.?\d+[eE][-+]?\d+", value):
            value = float(value)  # YAML 1.1 reads 3e-4 as a string
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ParamsError(f"override {item!r}: {part!r} is not a section")
            node = child
        node[parts[-1]] = value
    return out


def _format_validation_error(exc: ValidationError, source: str) -> str:
    lines = [f"{source}: {len(exc.errors())} invalid param(s):"]
    for err in exc.errors():
        path = ".".join(str(p) for p in err["loc"]) or "<root>"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key (not in the params schema)" + _did_you_mean(err["loc"])
        detail = ""
        if err["type"] not in ("missing", "extra_forbidden") and "input" in err and not isinstance(err["input"], dict):
            shown = MASK if any(is_secret_key(str(p)) for p in err["loc"]) else mask_secrets(err["input"])
            detail = f" (got {shown!r})"
        lines.append(f"  {path}: {msg}{detail}")
    return "\n".join(lines)


def _did_you_mean(loc: tuple[Any, ...]) -> str:
    """``; did you mean 'x'?`` for an unknown key at ``loc``, from the keys the schema has there ('' if none is close)."""
    model: Any = Params
    for part in loc[:-1]:
        fields = getattr(model, "model_fields", None)
        if fields is None:
            return ""
        field = next((f for n, f in fields.items() if part in (n, f.alias)), None)
        if field is None:
            return ""
        model = next((a for a in (field.annotation, *getattr(field.annotation, "__args__", ())) if hasattr(a, "model_fields")), None)
        if model is None:
            return ""
    known = [f.alias or n for n, f in model.model_fields.items()]
    close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


PARAMS_DIR = Path(__file__).resolve().parents[3] / "params"


def resolve_params_path(path: str | os.PathLike[str]) -> Path:
    """``path`` as given when it exists; a bare preset name (``aifs``) is ``params/<name>.yaml``.

    A name is looked up in ``./params`` and then in the checkout's ``params/``
    (so ``--params aifs`` works from any directory of a source checkout).
    """
    given = Path(path)
    if given.exists() or given.suffix in (".yaml", ".yml") or len(given.parts) > 1:
        return given
    for directory in (Path("params"), PARAMS_DIR):
        candidate = directory / f"{given.name}.yaml"
        if candidate.is_file():
            return candidate
    names = sorted(p.stem for p in PARAMS_DIR.glob("*.yaml"))
    raise ParamsError(f"{path}: no params file and no preset of that name (presets: {', '.join(names) or 'none found'})")


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ParamsError(f"{path}: params file not found")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ParamsError(
            f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); save the params file as UTF-8"
        ) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML: {exc}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: top level must be a mapping of sections, got {type(raw).__name__}")
    return _fix_yaml_floats(raw)


def _fix_yaml_floats(node: Any) -> Any:
    """YAML 1.1 (PyYAML) reads ``3e-4`` as a string; read it as the float a user means."""
    if isinstance(node, dict):
        return {k: _fix_yaml_floats(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_fix_yaml_floats(v) for v in node]
    if isinstance(node, str) and re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+", node):
        return float(node)
    return node


def validate_params(raw: dict[str, Any], source: str = "<params>") -> Params:
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        raise ParamsError(_format_validation_error(exc, source)) from None


def load_params(path: str | os.PathLike[str], overrides: list[str] | None = None) -> Params:
    """Reads, overrides and validates a params YAML (or preset name); raises ParamsError naming file and field paths."""
    path = resolve_params_path(path)
    raw = apply_overrides(_read_yaml(path), list(overrides or []))
    shown = [_masked_override(item) for item in overrides or []]
    source = str(path) + (f" (with overrides {' '.join(shown)})" if shown else "")
    return validate_params(raw, source)


def params_from_json(text: str) -> Params:
    """Params as passed to KFP components: the resolved dict as JSON, whole or a stage's (:meth:`Params.for_stage`).

    Sections missing from a stage's params read as :class:`SectionNotGiven`,
    so a stage that reads more than it declares fails loudly instead of using defaults.
    """
    return validate_params(json.loads(text), "<pipeline parameter params_json>")


def write_resolved(params: Params, directory: str | os.PathLike[str]) -> Path:
    """Writes the fully resolved params next to a stage's outputs; returns the file path."""
    return write_text_atomic(Path(directory) / RESOLVED_PARAMS_FILENAME, params.to_yaml())

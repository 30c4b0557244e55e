"""Configuration as data: dataclasses whose fields carry unit, range and description.

One description serves the YAML files in ``config/``, the ROS parameters a node declares (with descriptors
and ranges), and the CLI. Validation happens once, at the edge (:func:`validate`).
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, TypeVar

import numpy as np
import yaml

T = TypeVar("T")


def param(default: Any, doc: str, *, unit: str = "", lo: float | None = None, hi: float | None = None,
          choices: tuple[str, ...] | None = None) -> Any:
    """A dataclass field with the metadata a ROS parameter descriptor needs."""
    meta = {"doc": doc, "unit": unit, "lo": lo, "hi": hi, "choices": choices}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class ParamSpec:
    """One configurable value: ``name``, ``default``, python ``type``, description with unit, range."""

    name: str
    default: Any
    type: type
    doc: str
    unit: str
    lo: float | None
    hi: float | None
    choices: tuple[str, ...] | None

    @property
    def description(self) -> str:
        return f"{self.doc} [{self.unit}]" if self.unit else self.doc


def param_specs(cls: type) -> list[ParamSpec]:
    """The :class:`ParamSpec` of every field of a config dataclass, in declaration order."""
    specs = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        meta = f.metadata
        specs.append(ParamSpec(f.name, default, type(default), meta.get("doc", ""), meta.get("unit", ""),
                               meta.get("lo"), meta.get("hi"), meta.get("choices")))
    return specs


def validate(config: Any) -> Any:
    """Check every field of a config dataclass against its range/choices; raise ValueError naming the field."""
    for spec in param_specs(type(config)):
        value = getattr(config, spec.name)
        if spec.type is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
            object.__setattr__(config, spec.name, value)
        if not isinstance(value, spec.type):
            raise ValueError(f"{type(config).__name__}.{spec.name} must be {spec.type.__name__}, got {value!r}")
        if spec.lo is not None and value < spec.lo or spec.hi is not None and value > spec.hi:
            raise ValueError(f"{type(config).__name__}.{spec.name}={value!r} is outside "
                             f"[{spec.lo}, {spec.hi}] {spec.unit}".rstrip())
        if spec.choices is not None and value not in spec.choices:
            raise ValueError(f"{type(config).__name__}.{spec.name}={value!r}; choose one of {list(spec.choices)}")
    return config


def from_mapping(cls: type[T], values: Mapping[str, Any] | None = None, **overrides: Any) -> T:
    """Build and validate ``cls`` from a mapping (unknown keys are an error, with the known ones listed)."""
    merged = dict(values or {})
    merged.update(overrides)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(merged) - known
    if unknown:
        raise ValueError(f"unknown {cls.__name__} key(s) {sorted(unknown)}; known: {sorted(known)}")
    return validate(cls(**merged))


def plain_types(value: object) -> object:
    """``value`` with plain Python types only, ready for YAML/JSON: tuples, lists and numpy arrays become lists,
    numpy scalars Python scalars, recursively through dicts."""
    if isinstance(value, dict):
        return {k: plain_types(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [plain_types(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def known_fields(cls: type, data: Mapping[str, object]) -> dict[str, object]:
    """A copy of ``data`` after checking that every key is an init field of the dataclass ``cls``; an unknown key
    raises ValueError naming the unknown and the known keys."""
    known = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys {unknown}; known: {sorted(known)}")
    return dict(data)


def load_node_params(path: str | Path, node_name: str) -> dict[str, Any]:
    """The ``ros__parameters`` of ``node_name`` in a ROS 2 params YAML (``/**`` wildcard sections merged first)."""
    data = yaml.safe_load(Path(path).read_text()) or {}
    params: dict[str, Any] = {}
    for key in ("/**", node_name, f"/{node_name}"):
        section = data.get(key) or {}
        params.update(section.get("ros__parameters", {}))
    return params


def preset_with_overrides(presets: Mapping[str, Mapping[str, Any]], preset: str | None,
                          overrides: Mapping[str, Any] | None, cls: type) -> dict[str, Any]:
    """Field values of the config dataclass ``cls``: a deep copy of ``presets[preset]`` (or nothing), then
    ``overrides`` — dotted keys reach nested dicts (``model.steps``), a mapping merges into a mapping.
    An unknown preset or top-level key raises ValueError listing the known ones."""
    if preset and preset not in presets:
        raise ValueError(f"unknown preset {preset!r}; known: {sorted(presets)}")
    values: dict[str, Any] = copy.deepcopy(dict(presets[preset])) if preset else {}
    for key, value in (overrides or {}).items():
        target = values
        *parents, leaf = key.split(".")
        for part in parents:
            target = target.setdefault(part, {})
        if isinstance(value, Mapping) and isinstance(target.get(leaf), Mapping):
            target[leaf] = {**target[leaf], **value}
        else:
            target[leaf] = value
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - known
    if unknown:
        raise ValueError(f"unknown training key(s) {sorted(unknown)}; known: {sorted(known)}")
    return values


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["steps=20", "device=cuda"]`` -> ``{"steps": 20, "device": "cuda"}`` (values parsed as YAML)."""
    out = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"override {item!r} must look like key=value")
        key, value = item.split("=", 1)
        out[key.strip()] = yaml.safe_load(value)
    return out

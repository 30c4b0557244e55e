"""Configuration as data: dataclasses whose fields carry unit, range and description.

One description serves the YAML files in ``config/``, the ROS parameters a node declares (with descriptors
and ranges), and the CLI. Validation happens once, at the edge (:func:`validate`).

A field may itself be a config dataclass (:func:`section`, e.g. ``RobotPoseStageConfig.estimator:
PoseEstimatorConfig``): its fields are parameters named ``<section>.<field>`` (``estimator.search_size``;
:func:`flat_param_specs`, :func:`flat_values`), and :func:`from_mapping` takes them dotted or nested
(``{"estimator": {"search_size": 8}}``), as rcl reads a nested params YAML. A section's ``shared`` fields are not
parameters of their own: they take the value of the parent's field of the same name (one ``device`` for the
model and the estimator).
"""

from __future__ import annotations

import copy
import dataclasses
import re
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


def section(cls: type, doc: str, *, shared: tuple[str, ...] = ()) -> Any:
    """A dataclass field holding the config dataclass ``cls`` (default: ``cls()``), flattened into
    ``<field>.<name>`` parameters. ``shared``: fields of ``cls`` that take the value of the parent's field of the
    same name (e.g. ``device``) instead of being parameters of their own."""
    return field(default_factory=cls, metadata={"doc": doc, "section": cls, "shared": tuple(shared)})


@dataclass(frozen=True)
class Section:
    """A field of a config dataclass that is a config dataclass itself: its class and its shared fields."""

    cls: type
    shared: tuple[str, ...] = ()


def _default(f: dataclasses.Field) -> Any:
    return f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]


def sections(cls: type) -> dict[str, Section]:
    """The fields of the config dataclass ``cls`` that are config dataclasses (declared with :func:`section`, or a
    plain field whose default is a dataclass instance), by name."""
    found = {}
    for f in dataclasses.fields(cls):
        section_cls = f.metadata.get("section")
        if section_cls is None:
            default = _default(f) if f.default_factory is not dataclasses.MISSING else f.default
            if not (dataclasses.is_dataclass(default) and not isinstance(default, type)):
                continue
            section_cls = type(default)
        found[f.name] = Section(section_cls, tuple(f.metadata.get("shared", ())))
    return found


def param_specs(cls: type) -> list[ParamSpec]:
    """The :class:`ParamSpec` of every field of a config dataclass, in declaration order (a section is one spec
    whose type is its config class; :func:`flat_param_specs` expands it). A field without :func:`param` metadata
    is described by its name."""
    specs = []
    for f in dataclasses.fields(cls):
        default = _default(f)
        meta = f.metadata
        specs.append(ParamSpec(f.name, default, type(default), meta.get("doc") or f.name.replace("_", " "),
                               meta.get("unit", ""), meta.get("lo"), meta.get("hi"), meta.get("choices")))
    return specs


def flat_param_specs(cls: type, prefix: str = "") -> list[ParamSpec]:
    """:func:`param_specs` with every section expanded in place into ``<section>.<field>`` specs (recursively;
    its shared fields left out): one spec per ROS parameter of a node whose stage config is ``cls``."""
    nested = sections(cls)
    specs = []
    for spec in param_specs(cls):
        if spec.name not in nested:
            specs.append(dataclasses.replace(spec, name=prefix + spec.name))
            continue
        shared = set(nested[spec.name].shared)
        specs += [s for s in flat_param_specs(nested[spec.name].cls, f"{prefix}{spec.name}.")
                  if s.name.removeprefix(f"{prefix}{spec.name}.") not in shared]
    return specs


def flat_values(config: Any, prefix: str = "") -> dict[str, Any]:
    """Every parameter value of a config dataclass instance by its :func:`flat_param_specs` name."""
    nested = sections(type(config))
    values: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if f.name in nested:
            shared = set(nested[f.name].shared)
            values.update({k: v for k, v in flat_values(value, f"{prefix}{f.name}.").items()
                           if k.removeprefix(f"{prefix}{f.name}.") not in shared})
        else:
            values[prefix + f.name] = value
    return values


def validate(config: Any) -> Any:
    """Check every field of a config dataclass against its range/choices; raise ValueError naming the field.

    A section must hold its config class (a mapping is built into one with :func:`from_mapping`); its shared
    fields are set to the parent's values (the section is rebuilt, so its own checks run on them)."""
    nested = sections(type(config))
    for spec in param_specs(type(config)):
        if spec.name in nested:
            _validate_section(config, spec.name, nested[spec.name])
            continue
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


def _validate_section(config: Any, name: str, section_: Section) -> None:
    value = getattr(config, name)
    shared = {n: getattr(config, n) for n in section_.shared}
    if isinstance(value, Mapping):
        value = from_mapping(section_.cls, {**value, **shared})
    if not isinstance(value, section_.cls):
        raise ValueError(f"{type(config).__name__}.{name} must be a {section_.cls.__name__}, got {value!r}")
    if any(getattr(value, n) != v for n, v in shared.items()):
        value = dataclasses.replace(value, **shared)
    object.__setattr__(config, name, value)


def from_mapping(cls: type[T], values: Mapping[str, Any] | None = None, **overrides: Any) -> T:
    """Build and validate ``cls`` from a mapping. Section fields may be given dotted (``estimator.search_size``)
    or as a nested mapping (``estimator: {search_size: 8}``); unknown keys, and a section's shared fields, are an
    error naming the known parameters."""
    merged = dict(values or {})
    merged.update(overrides)
    return validate(cls(**_init_values(cls, merged)))


def _init_values(cls: type, values: Mapping[str, Any]) -> dict[str, Any]:
    """``cls(**result)`` arguments from flat, dotted or nested ``values`` (sections built here)."""
    nested = sections(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    direct: dict[str, Any] = {}
    grouped: dict[str, dict[str, Any]] = {name: {} for name in nested}
    unknown = []
    for key, value in values.items():
        head, dot, rest = key.partition(".")
        if dot and head in nested:
            grouped[head][rest] = value
        elif not dot and key in nested and isinstance(value, Mapping):
            grouped[key].update(value)
        elif not dot and key in known:
            direct[key] = value
        else:
            unknown.append(key)
    for name, given in grouped.items():
        shared = [k for k in given if k.partition(".")[0] in nested[name].shared]
        unknown += [f"{name}.{k}" for k in shared]
    if unknown:
        raise ValueError(f"unknown {cls.__name__} key(s) {sorted(unknown)}; known: "
                         f"{sorted(s.name for s in flat_param_specs(cls))}")
    defaults = {f.name: f for f in dataclasses.fields(cls)}
    for name, given in grouped.items():
        if not given:
            continue
        # dotted keys refine the section given alongside them, else the field's own default (which may differ
        # from the section class's defaults, e.g. a training preset's model)
        start = direct[name] if dataclasses.is_dataclass(direct.get(name)) else _default(defaults[name])
        base = flat_values(start) if dataclasses.is_dataclass(start) else {}
        shared = {n: direct[n] if n in direct else _default(defaults[n]) for n in nested[name].shared}
        direct[name] = from_mapping(nested[name].cls, {**base, **given}, **shared)
    return direct


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


def params_section_matches(key: str, node_name: str, namespace: str = "/") -> bool:
    """Whether a params-file section ``key`` applies to node ``node_name`` in ``namespace``, as rcl decides:
    the key is a fully qualified node name (a bare ``name`` means ``/name``) where ``/**`` stands for any number
    of namespace levels (none included) and ``*`` for one name token: ``/**``, ``/**/completion_node``,
    ``/car1/completion_node`` and ``/*/completion_node`` all match ``completion_node`` in ``/car1``."""
    key = key if key.startswith("/") else f"/{key}"
    fqn = f"{namespace.rstrip('/')}/{node_name}"
    pattern = ""
    for token in key.split("/")[1:]:
        pattern += "(/[^/]+)*" if token == "**" else "/" + re.escape(token).replace(r"\*", "[^/]+")
    return re.fullmatch(pattern, fqn) is not None


def load_node_params(path: str | Path, node_name: str, namespace: str = "/") -> dict[str, Any]:
    """The ``ros__parameters`` of node ``node_name`` in ``namespace`` from a ROS 2 params YAML, as rcl reads
    them: every section that matches the node (:func:`params_section_matches`: ``/**``, ``/**/node``,
    ``/ns/node``, ``node``) merged in file order, a later one winning; nested mappings flattened into dotted
    names (``estimator: {search_size: 8}`` -> ``estimator.search_size``)."""
    data = yaml.safe_load(Path(path).read_text()) or {}
    params: dict[str, Any] = {}
    for key, section_ in data.items():
        if isinstance(section_, Mapping) and params_section_matches(str(key), node_name, namespace):
            params.update(flatten_params(section_.get("ros__parameters") or {}))
    return params


def flatten_params(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested parameter mappings as one mapping of dotted names: ``{"a": {"b": 1}}`` -> ``{"a.b": 1}``."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, Mapping):
            flat.update(flatten_params(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


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

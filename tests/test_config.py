"""Config dataclasses with nested sections: flattened into ``section.field`` parameters with their metadata, built
from dotted or nested mappings, shared fields taken from the parent, errors naming the key."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from gen3d_ros.config import (flat_param_specs, flat_values, flatten_params, from_mapping, load_node_params, param,
                              section, validate)


@dataclass
class Inner:
    steps: int = param(10, "optimiser steps", lo=1, hi=100)
    rate: float = param(0.1, "step size", unit="m", lo=0.0)
    device: str = param("cpu", "torch device")
    scales: tuple[float, ...] = param((0.5, 1.0), "pyramid scales")

    def __post_init__(self) -> None:
        self.scales = tuple(float(v) for v in self.scales)
        validate(self)


@dataclass
class Plain:
    """A section without parameter metadata."""

    window: int = 3


@dataclass
class Outer:
    name: str = param("a", "a name")
    device: str = param("cpu", "torch device of everything")
    inner: Inner = section(Inner, "the optimiser", shared=("device",))
    plain: Plain = field(default_factory=Plain)
    last: bool = param(True, "after the sections")

    def __post_init__(self) -> None:
        validate(self)


def test_sections_flatten_in_place_with_their_metadata_and_without_shared_fields():
    specs = flat_param_specs(Outer)
    assert [s.name for s in specs] == ["name", "device", "inner.steps", "inner.rate", "inner.scales",
                                       "plain.window", "last"]
    by_name = {s.name: s for s in specs}
    assert (by_name["inner.steps"].lo, by_name["inner.steps"].hi) == (1, 100)
    assert by_name["inner.rate"].description == "step size [m]"
    assert by_name["plain.window"].doc == "window" and by_name["plain.window"].default == 3
    assert flat_values(Outer()) == {"name": "a", "device": "cpu", "inner.steps": 10, "inner.rate": 0.1,
                                    "inner.scales": (0.5, 1.0), "plain.window": 3, "last": True}


def test_from_mapping_takes_dotted_and_nested_keys_and_shares_the_parents_fields():
    dotted = from_mapping(Outer, {"inner.steps": 20, "inner.scales": [1], "device": "cuda:1", "plain.window": 5})
    nested = from_mapping(Outer, {"inner": {"steps": 20, "scales": [1]}, "device": "cuda:1", "plain": {"window": 5}})
    assert dotted == nested
    assert dotted.inner == Inner(steps=20, scales=(1.0,), device="cuda:1") and dotted.plain.window == 5
    assert Outer(device="cuda").inner.device == "cuda"  # a shared field follows the parent, however it is built
    assert from_mapping(Outer, {"inner": Inner(steps=7), "inner.rate": 0.5}).inner == Inner(steps=7, rate=0.5)


@pytest.mark.parametrize("values, message", [
    ({"inner.steps": 0}, r"Inner.steps=0 is outside \[1, 100\]"),
    ({"inner.stpes": 3}, r"unknown Inner key\(s\) \['stpes'\]"),
    ({"inner.device": "cuda"}, r"unknown Outer key\(s\) \['inner.device'\]"),
    ({"outer_thing": 1}, r"unknown Outer key\(s\) \['outer_thing'\]; known: .*'inner.steps'"),
    ({"inner": 3}, r"Outer.inner must be a Inner"),
])
def test_bad_section_values_name_the_key(values, message):
    with pytest.raises(ValueError, match=message):
        from_mapping(Outer, values)


def test_params_files_are_read_flat_as_rcl_reads_them(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("/**:\n  ros__parameters:\n    name: b\n"
                    "node:\n  ros__parameters:\n    inner:\n      steps: 4\n    inner.rate: 0.2\n")
    assert load_node_params(path, "node") == {"name": "b", "inner.steps": 4, "inner.rate": 0.2}
    assert flatten_params({"a": {"b": {"c": 1}}, "d": [1, 2]}) == {"a.b.c": 1, "d": [1, 2]}


def test_params_file_sections_match_namespaced_nodes_as_rcl_does(tmp_path):
    """Sections apply in file order, a later one winning; ``/**`` spans any number of namespace levels, ``*`` one,
    a bare name is the root namespace's only (checked against rclpy 2024 Jazzy with the same file)."""
    path = tmp_path / "p.yaml"
    path.write_text("/car1/n:\n  ros__parameters:\n    a: 3\n"
                    "/**/n:\n  ros__parameters:\n    a: 1\n    b: 1\n"
                    "/**:\n  ros__parameters:\n    c: 5\n    a: 7\n"
                    "n:\n  ros__parameters:\n    d: 9\n"
                    "/*/n:\n  ros__parameters:\n    e: 2\n"
                    "/car2/n:\n  ros__parameters:\n    f: 4\n")
    assert load_node_params(path, "n", "/car1") == {"a": 7, "b": 1, "c": 5, "e": 2}
    assert load_node_params(path, "n") == {"a": 7, "b": 1, "c": 5, "d": 9}
    assert load_node_params(path, "n", "/a/b") == {"a": 7, "b": 1, "c": 5}
    assert load_node_params(path, "m", "/car1") == {"c": 5, "a": 7}


def test_dotted_section_keys_start_from_the_fields_own_default() -> None:
    """``model.hidden=8`` changes one field of the training's default model, not of GaussianModelConfig()'s."""
    from gen3d_ros.robot.training.config import RobotTrainConfig

    default_model = RobotTrainConfig().model
    config = from_mapping(RobotTrainConfig, {"model.hidden": 8})
    assert config.model.hidden == 8
    assert config.model.n_gaussians == default_model.n_gaussians

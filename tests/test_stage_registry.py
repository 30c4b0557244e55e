"""The stage registry (gen3d_ros/pipeline/registry.py): listing it imports no stage and no torch, and every entry
agrees with its Stage class (names, every input and output with a default topic) and its config class."""

from __future__ import annotations

import subprocess
import sys

import pytest

from gen3d_ros.config import flat_param_specs
from gen3d_ros.pipeline.registry import STAGES, WORKERS, node_entry, node_names, stage_entry, stage_names


def test_listing_the_registry_imports_no_stage_and_no_torch():
    code = ("import sys; from gen3d_ros.pipeline.registry import STAGES, node_names; node_names(); "
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('gen3d_ros.pipeline.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['gen3d_ros.pipeline.registry']"


def test_names_are_unique_and_found_both_ways():
    assert len(set(stage_names())) == len(STAGES) and len(set(node_names())) == len(STAGES)
    for entry in STAGES:
        assert stage_entry(entry.name) is entry and node_entry(entry.node) is entry
    with pytest.raises(KeyError, match="known nodes"):
        node_entry("teleport_node")


def test_topics_resolve_like_rcl():
    from gen3d_ros.pipeline.registry import resolve_topic

    assert resolve_topic("points", "completion_node") == "/points"
    assert resolve_topic("~/mesh", "completion_node") == "/completion_node/mesh"
    assert resolve_topic("~/mesh", "completion_node", "/car1") == "/car1/completion_node/mesh"
    assert resolve_topic("points", "completion_node", "/car1/") == "/car1/points"
    assert resolve_topic("/tf", "robot_pose_node", "/car1") == "/tf"
    with pytest.raises(ValueError, match="absolute"):
        resolve_topic("points", "completion_node", "car1")


@pytest.mark.parametrize("entry", STAGES, ids=lambda e: e.name)
def test_entry_matches_its_stage_and_config_classes(entry):
    stage_cls = entry.stage_class()
    assert stage_cls.name == entry.name
    assert set(entry.inputs) == set(stage_cls.inputs) and set(entry.outputs) == set(stage_cls.outputs)
    # relative or private defaults, so that a namespace moves them; only tf is absolute (tf2 listens on /tf and
    # /tf_static)
    assert all(not topic.startswith("/") or topic in ("/tf", "/tf_static") for topic in entry.topics.values()), \
        entry.topics
    assert entry.latched <= set(entry.outputs) and entry.quiet_inputs <= set(entry.inputs)
    assert set(entry.auto_any_input) <= set(entry.inputs) and entry.worker in WORKERS
    config_cls = entry.config_class()
    config_cls()  # the defaults construct
    assert all(spec.doc for spec in flat_param_specs(config_cls))

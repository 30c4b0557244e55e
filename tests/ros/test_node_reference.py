"""docs/NODES.md is the node reference generated from the declared parameters and the registry's topics."""

from __future__ import annotations

from gen3d_ros.pipeline.registry import STAGES
from gen3d_ros.ros.node_reference import node_reference
from gen3d_ros.ros.params import declared_params
from ros_harness import REPO


def test_node_reference_is_up_to_date():
    assert (REPO / "docs" / "NODES.md").read_text() == node_reference(), (
        "docs/NODES.md differs from the declared parameters: run python -m gen3d_ros.ros.node_reference")


def test_node_reference_lists_every_topic_and_parameter_with_its_unit():
    text = node_reference()
    for entry in STAGES:
        section = text.split(f"## `{entry.node}`", 1)[1].split("\n## ", 1)[0]
        for topic in entry.topics.values():
            assert f"| `{topic}` |" in section, (entry.node, topic)
        for param in declared_params(entry):
            if not param.name.endswith("_topic"):
                row = next(line for line in section.splitlines() if line.startswith(f"| `{param.name}` |"))
                assert param.spec.unit in row, (entry.node, param.name)

"""Input-link diagnostics and the choice of the subscription's reliability (pure logic, no rclpy needed)."""

from __future__ import annotations

import pytest

from gen3d_ros.pipeline.base import StageStats
from gen3d_ros.ros.diagnostics import ERROR, OK, WARN, InputLink, StageHealth
from gen3d_ros.ros.params import BEST_EFFORT, RELIABLE, subscription_reliability


@pytest.mark.parametrize("input_qos,best_effort_publishers,expected", [
    ("auto", 0, RELIABLE),       # reliable publishers (or none yet): every message, whatever its size
    ("auto", 1, BEST_EFFORT),    # a best-effort publisher would not match a reliable subscription
    ("reliable", 2, RELIABLE),
    ("sensor_data", 0, BEST_EFFORT),
])
def test_subscription_reliability_follows_input_qos_and_the_publishers(input_qos, best_effort_publishers, expected):
    assert subscription_reliability(input_qos, best_effort_publishers) == expected


def test_subscription_reliability_rejects_an_unknown_setting_by_name():
    with pytest.raises(ValueError, match="'fast'"):
        subscription_reliability("fast", 0)


def test_silent_input_with_publishers_warns_after_the_timeout_and_says_why():
    health = StageHealth(("/in",), input_timeout_s=3.0)
    stats = StageStats()
    # publishers exist, nothing arrived for 2.5 s: not yet
    level, message = health.update(stats, 0, links=[InputLink("/in", 1, 2.5)], now=0.0)
    assert level == OK and message.startswith("waiting for input on /in")
    # no publisher at all: waiting, and it says so
    level, message = health.update(stats, 0, links=[InputLink("/in", 0, None)], now=1.0)
    assert level == OK and "no publisher on /in" in message
    # best-effort subscription, reliable publishers (input_qos: sensor_data), silent 4 s: too large for best effort
    link = InputLink("/in", 2, 4.0, BEST_EFFORT, 0, "", "sensor_data")
    level, message = health.update(stats, 0, links=[link], now=2.0)
    assert level == WARN
    assert "nothing received on /in for 4.0 s although 2 publisher(s) exist" in message
    assert "512 KiB" in message and "input_qos: reliable" in message
    # reliable subscription, a best-effort publisher: QoS incompatible, named as such
    link = InputLink("/in", 1, 5.0, RELIABLE, 1, "RELIABILITY", "reliable")
    level, message = health.update(stats, 0, links=[link], now=3.0)
    assert level == WARN and "QoS incompatible (RELIABILITY)" in message and "best effort" in message
    # best-effort publisher and subscription (auto): publish reliable or smaller messages
    link = InputLink("/in", 1, 5.0, BEST_EFFORT, 1, "", "auto")
    assert "publish reliable" in health.update(stats, 0, links=[link], now=4.0)[1]
    # input_timeout 0: never
    quiet = StageHealth(("/in",), input_timeout_s=0.0)
    assert quiet.update(stats, 0, links=[InputLink("/in", 1, 99.0)], now=0.0)[0] == OK


def test_stage_and_reconfiguration_errors_are_errors_with_their_reason():
    health = StageHealth(("/in",), hold_s=5.0)
    stats = StageStats()
    level, message = health.update(stats, 0, stage_error="CheckpointError: bad.pt", now=0.0)
    assert level == ERROR and "cannot be built" in message and "bad.pt" in message
    text = "reconfiguration {'method': 'hgca'} was accepted but failed to build; parameters were set back"
    level, message = health.update(stats, 0, config_error=text, config_failures=1, now=1.0)
    assert (level, message) == (ERROR, text)
    assert health.update(stats, 0, config_error=text, config_failures=1, now=5.5)[0] == ERROR  # held for hold_s
    assert health.update(stats, 0, config_error=text, config_failures=1, now=6.5)[0] == OK
    assert health.update(stats, 0, config_error=text, config_failures=2, now=7.0)[0] == ERROR  # a new failure

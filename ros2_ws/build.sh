#!/usr/bin/env bash
# Build gen3d_ros against a system ROS 2 install (Jazzy or newer) with colcon.
#   source /opt/ros/jazzy/setup.bash && ros2_ws/build.sh
set -euo pipefail
ws="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$ws/.." && pwd)"
if [[ -z "${ROS_DISTRO:-}" ]]; then
  echo "error: no ROS 2 environment; run: source /opt/ros/<distro>/setup.bash" >&2
  exit 1
fi
mkdir -p "$ws/src"
ln -sfn "$repo" "$ws/src/gen3d_ros"
# Python dependencies that have no rosdep keys (torch CPU wheel, open3d, rosbags, ...), into the user site.
if ! python3 -c 'import torch, open3d, rosbags' 2>/dev/null; then
  echo "installing Python dependencies (requirements/runtime.txt) with pip --user"
  python3 -m pip install --user -r "$repo/requirements/runtime.txt"
fi
cd "$ws"
colcon build --symlink-install --packages-select gen3d_ros "$@"
echo "done: source $ws/install/setup.bash, then: ros2 launch gen3d_ros gen3d.launch.py"

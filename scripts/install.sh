#!/usr/bin/env bash
# Create the venv and install gen3d_ros with its pinned dependencies from requirements/*.txt.
#   scripts/install.sh [VENV]      (default .venv; called by `make`)
# Machines with a sourced ROS 2 install (rclpy importable from the system Python) keep the system rclpy:
# the venv then sees system site-packages and nothing ROS is installed from pip.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
venv="${1:-$repo/.venv}"
python="${PYTHON:-python3}"

need_apt=()
# open3d's wheel links libusb-1.0; CMake + a C++ compiler build the package's ROS 2 interfaces.
ldconfig -p 2>/dev/null | grep -q 'libusb-1.0.so.0' || need_apt+=(libusb-1.0-0)
ldconfig -p 2>/dev/null | grep -q 'libgomp.so.1' || need_apt+=(libgomp1)
command -v cmake >/dev/null || need_apt+=(cmake)
command -v g++ >/dev/null || need_apt+=(g++)
if ((${#need_apt[@]})); then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "installing system packages: ${need_apt[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    echo "error: missing system packages: ${need_apt[*]}; install them (sudo apt-get install ${need_apt[*]}) and rerun" >&2
    exit 1
  fi
fi

system_ros=0
if [[ -n "${ROS_DISTRO:-}" ]] && "$python" -c 'import rclpy' 2>/dev/null; then
  system_ros=1
  echo "using the system ROS 2 ($ROS_DISTRO) rclpy; ROS wheels are not installed"
fi

if [[ ! -x "$venv/bin/python" ]]; then
  if ((system_ros)); then "$python" -m venv --system-site-packages "$venv"; else "$python" -m venv "$venv"; fi
fi
pip=("$venv/bin/python" -m pip install --disable-pip-version-check -q)
reqs=(-r "$repo/requirements/runtime.txt" -r "$repo/requirements/dev.txt")
((system_ros)) || reqs+=(-r "$repo/requirements/ros.txt" -r "$repo/requirements/ros-build.txt")
log="$(mktemp)"
echo "installing pinned Python dependencies into $venv (first time: a few minutes)"
if ! "${pip[@]}" "${reqs[@]}" >"$log" 2>&1; then
  grep -v '^WARNING: Location' "$log" >&2; rm -f "$log"; exit 1
fi
rm -f "$log"
# compat mode puts the source tree on sys.path through a .pth file; the generated messages installed in
# the venv then merge into the same package (see gen3d_ros/__init__.py).
"${pip[@]}" --no-deps --no-build-isolation -e "$repo" --config-settings editable_mode=compat
"$venv/bin/python" -c 'import torch, open3d, cv2, rosbags, gen3d_ros' \
  || { echo "error: the venv at $venv cannot import the core dependencies" >&2; exit 1; }
echo "gen3d_ros installed in $venv"

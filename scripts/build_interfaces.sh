#!/usr/bin/env bash
# Build the package's own ROS 2 interfaces (msg/*.msg, srv/*.srv, action/*.action) with rosidl from the pip-installed ROS 2 Jazzy
# build wheels, without a ROS 2 install, and install them into the venv, which is already an ament prefix:
# the libraries land in VENV/lib (on the LD_LIBRARY_PATH that the ros-wheels bootstrapper sets) and the
# Python messages in VENV/.../site-packages/gen3d_ros/msg, merged into the gen3d_ros package through
# pkgutil.extend_path (gen3d_ros/__init__.py).
#
#   scripts/build_interfaces.sh [VENV]     (default VENV: .venv)
#
# On a ROS 2 machine use colcon instead (ros2_ws/README.md); this script is for pip-only machines.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
venv="$(cd "${1:-$repo/.venv}" && pwd)"
py="$venv/bin/python"
build="$repo/build/ros2/build"
prefix="$venv"
stamp="$venv/share/gen3d_ros/.msg_hash"

sitepkg="$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"

# Rebuild only when a message definition or this recipe changed (or the output went missing).
hash="$(cat "$repo"/msg/*.msg "$repo"/srv/*.srv "$repo"/action/*.action "$repo/CMakeLists.txt" "$0" | sha256sum | cut -d' ' -f1)"
gen3d_current=0
if [[ -f "$stamp" && "$(cat "$stamp")" == "$hash" && -f "$sitepkg/gen3d_ros/msg/__init__.py" ]]; then
  gen3d_current=1
fi

# tf2_msgs (TFMessage, for /tf) has no wheel: build the vendored copy (vendor/tf2_msgs) where the venv cannot
# import one. A tf2_msgs that we built earlier (its stamp exists) is rebuilt when the vendored files change; one
# that came from elsewhere is left alone.
tf2_stamp="$venv/share/tf2_msgs/.gen3d_vendor_hash"
tf2_hash="$(cat "$repo"/vendor/tf2_msgs/msg/*.msg "$repo/vendor/tf2_msgs/CMakeLists.txt" "$0" | sha256sum | cut -d' ' -f1)"
tf2_needed=0
if [[ -f "$tf2_stamp" ]]; then
  [[ "$(cat "$tf2_stamp")" == "$tf2_hash" && -f "$sitepkg/tf2_msgs/msg/__init__.py" ]] || tf2_needed=1
elif ! "$py" -c 'import tf2_msgs.msg' 2>/dev/null; then
  tf2_needed=1
fi

if [[ "$gen3d_current" == 1 && "$tf2_needed" == 0 ]]; then
  echo "gen3d_ros interfaces up to date in $prefix"
  exit 0
fi

# The wheels' CMake files carry the include dirs of the machine that built them
# (/opt/python/cp311-cp311/include/python3.11 and its numpy). Point them at this interpreter, once.
"$py" - "$venv" <<'PYEOF'
import pathlib, re, sys, sysconfig
import numpy
venv = pathlib.Path(sys.argv[1])
py_inc = sysconfig.get_paths()["include"]
np_inc = numpy.get_include()
changed = 0
for f in (venv / "share").rglob("*.cmake"):
    text = f.read_text(errors="surrogateescape")
    new = re.sub(r"/opt/python/cp3\d+-cp3\d+/include/python3\.\d+", py_inc, text)
    new = re.sub(r"[^\s;\"]*/site-packages/numpy/(?:_core|core)/include", np_inc, new)
    if new != text:
        f.write_text(new, errors="surrogateescape")
        changed += 1
print(f"rewrote include paths in {changed} CMake files" if changed else "CMake include paths already local")
PYEOF

export AMENT_PREFIX_PATH="$venv"
export PATH="$venv/bin:$PATH"

# configure + build + install one staged ament package: build_package SRC_DIR BUILD_DIR [cmake args...]
build_package() {
  local src="$1" dir="$2"
  shift 2
  rm -rf "$dir"
  mkdir -p "$dir"
  cmake -S "$src" -B "$dir" -DCMAKE_PREFIX_PATH="$venv" -DCMAKE_INSTALL_PREFIX="$prefix" \
    -DPython3_EXECUTABLE="$py" -DBUILD_TESTING=OFF -DCMAKE_BUILD_TYPE=Release "$@" >"$dir/configure.log" 2>&1 \
    || { cat "$dir/configure.log"; exit 1; }
  cmake --build "$dir" -j"$(nproc)" >"$dir/build.log" 2>&1 || { tail -50 "$dir/build.log"; exit 1; }
  cmake --install "$dir" >/dev/null
}

if [[ "$tf2_needed" == 1 ]]; then
  tf2_src="$repo/build/ros2/src/tf2_msgs"
  rm -rf "$tf2_src"
  mkdir -p "$(dirname "$tf2_src")"
  cp -r "$repo/vendor/tf2_msgs" "$tf2_src"
  build_package "$tf2_src" "$repo/build/ros2/build-tf2_msgs"
  echo "$tf2_hash" >"$tf2_stamp"
  echo "built vendored tf2_msgs into $prefix"
fi
if [[ "$gen3d_current" == 1 ]]; then
  echo "gen3d_ros interfaces up to date in $prefix"
  exit 0
fi

# CMake refuses include dirs inside the source tree, and the venv usually lives in the repo: configure from
# a staged copy of the package instead of the repo itself.
src="$repo/build/ros2/src/gen3d_ros"
rm -rf "$src"
mkdir -p "$src"
cp -r "$repo/package.xml" "$repo/CMakeLists.txt" "$repo/msg" "$repo/srv" "$repo/action" "$src/"
build_package "$src" "$build" -DGEN3D_INSTALL_PYTHON=OFF
# rosidl writes an empty gen3d_ros/__init__.py; without it that folder is a namespace portion, so the real
# package (the source tree, on sys.path through the editable install) is imported and extends its __path__.
# Its egg-info would make pip treat the folder as a second gen3d_ros install (and delete it on reinstall).
rm -rf "$sitepkg/gen3d_ros/__init__.py" "$sitepkg"/gen3d_ros-*.egg-info
echo "$hash" >"$stamp"
echo "built gen3d_ros interfaces into $prefix"

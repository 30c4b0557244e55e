# gen3d_ros — the two commands of the README:
#   make demo   install (first time) and run the end-to-end demo on a generated drive and robot
#   make test   install (first time) and run the test suite (what CI runs)
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.gen3d-installed
DEMO_OUT ?= demo_out
PYTEST_ARGS ?=

.PHONY: all install interfaces sparse-backends test-data demo test clean

all: demo

$(STAMP): requirements/runtime.txt requirements/ros.txt requirements/ros-build.txt requirements/dev.txt pyproject.toml scripts/install.sh
	scripts/install.sh $(VENV)
	@touch $@

# The package's own ROS 2 messages (msg/*.msg), built with rosidl from the pip-installed build wheels.
# Skipped where a system ROS 2 is sourced: there, build with colcon (ros2_ws/README.md).
interfaces: $(STAMP)
	@if [ -n "$$ROS_DISTRO" ] && python3 -c 'import rclpy' 2>/dev/null; then \
	  echo "system ROS 2 found: build the messages with colcon (ros2_ws/README.md)"; \
	else scripts/build_interfaces.sh $(VENV); fi

install: $(STAMP) interfaces

# Optional sparse-conv backends (spconv wheel, MinkowskiEngine built from source, wheel cached in
# ~/.cache/gen3d_ros): `make test` installs them so the backend agreement tests run against both.
BACKENDS_STAMP := $(VENV)/.gen3d-sparse-backends
$(BACKENDS_STAMP): requirements/sparse-backends.txt scripts/build_minkowski.sh $(STAMP)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements/sparse-backends.txt 2>&1 | grep -v '^WARNING: Location' || true
	scripts/build_minkowski.sh $(VENV)
	$(PY) -c 'import spconv.pytorch, MinkowskiEngine'
	@touch $@

sparse-backends: $(BACKENDS_STAMP)

# Real scans from Debian packages (liboctomap-dev's scan.dat.bz2) for the real-data smoke tests.
test-data:
	@scripts/install_test_data.sh

demo: install
	$(VENV)/bin/gen3d demo --output $(DEMO_OUT) --force

# pytest exits 5 when it collected no test; that is not a failure of the code, so say so and pass.
test: install sparse-backends test-data
	@$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests (exit 5)"; exit 0; fi; exit $$rc

clean:
	rm -rf build $(DEMO_OUT) .pytest_cache

#!/usr/bin/env bash
# Real data the test suite reads from Debian packages (no download from elsewhere):
#   liboctomap-dev: examples/data/scan.dat.bz2, a real laser scan graph (the real-scan smoke test of completion).
# Needs root + apt; elsewhere it says what to install and the tests that need the data skip with that reason.
set -uo pipefail
scan=/usr/share/doc/liboctomap-dev/examples/data/scan.dat.bz2
[[ -f $scan ]] && exit 0
if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
  echo "installing test data: liboctomap-dev (a real laser scan)"
  (apt-get install -y -qq --no-install-recommends liboctomap-dev >/dev/null 2>&1 \
    || { apt-get update -qq && apt-get install -y -qq --no-install-recommends liboctomap-dev >/dev/null; }) \
    || echo "warning: could not install liboctomap-dev; the real-scan tests will skip" >&2
else
  echo "note: sudo apt-get install liboctomap-dev enables the real-scan tests" >&2
fi
exit 0

#!/usr/bin/env bash
# crossdock vs skopeo vs the raw-upload limit on two loopback registries (issue 5).
#   bench/run.sh [RUNS] [--cases abcdefg] [--no-build] ...    (python3 bench/run.py --help)
# Needs docker-registry, skopeo, cargo and python3; the regbench scripts are in bench/regbench.
exec python3 "$(dirname "$0")/run.py" "$@"

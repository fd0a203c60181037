#!/usr/bin/env bash
# Stop registries started by start-registries.sh, by the PID in BASEDIR/PORT/registry.pid.
#
#   stop-registries.sh [-d BASEDIR] [--purge] [PORT ...]     (no PORT: every BASEDIR/*/registry.pid)
#
# Only a PID whose command line is `docker-registry serve BASEDIR/PORT/config.yml` is signalled.
# --purge also deletes BASEDIR/PORT (storage, log, config).
set -euo pipefail
BASE=${REGBENCH_BASE:-/tmp/regbench/registries}
PURGE=""
ports=()
while [ $# -gt 0 ]; do
  case "$1" in
    -d) BASE=$2; shift 2 ;;
    --purge) PURGE=1; shift ;;
    -h|--help) sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
    *) ports+=("$1"); shift ;;
  esac
done
if [ ${#ports[@]} -eq 0 ]; then
  for f in "$BASE"/*/registry.pid; do [ -e "$f" ] && ports+=("$(basename "$(dirname "$f")")"); done
fi
for port in "${ports[@]}"; do
  dir=$BASE/$port; pf=$dir/registry.pid
  if [ -f "$pf" ]; then
    pid=$(cat "$pf")
    if [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q -- "serve $dir/config.yml"; then
      kill -TERM "$pid"
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
      echo "stopped registry 127.0.0.1:$port (pid $pid)"
    else
      echo "port $port: pid $pid is not our registry (already gone?)" >&2
    fi
    rm -f "$pf"
  fi
  [ -n "$PURGE" ] && rm -rf "$dir"
done
exit 0
# Copied unchanged (but for this last line) from regbench: ../shared/regbench/stop-registries.sh beside the crossdock repository.

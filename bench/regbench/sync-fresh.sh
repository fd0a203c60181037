#!/usr/bin/env bash
# One real `skopeo sync` of a whole repository (every tag) into a never-used destination prefix.
#
#   sync-fresh.sh SRC_HOST:PORT/REPO DST_HOST:PORT/PREFIX [extra skopeo sync args ...]
#
# Destination = DST_HOST:PORT/PREFIX-N (N from the same counter file as copy-fresh.sh); skopeo
# sync appends the source repo's last path element, so tags land in PREFIX-N/<basename REPO>.
# Deletes skopeo's blob-info cache first unless REGBENCH_KEEP_CACHE=1 (see copy-fresh.sh). Runs:
#   skopeo sync --all --preserve-digests --src docker --dest docker \
#       --src-tls-verify=false --dest-tls-verify=false [extra] SRC DST/PREFIX-N
set -euo pipefail
[ $# -ge 2 ] || { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
src=$1 dstprefix=$2; shift 2
counter=${REGBENCH_COUNTER:-/tmp/regbench/counter}
mkdir -p "$(dirname "$counter")"
n=$( exec 9>>"$counter.lock"; flock 9; c=$(cat "$counter" 2>/dev/null || echo 0); c=$((c+1)); echo "$c" > "$counter"; echo "$c" )
if [ -z "${REGBENCH_KEEP_CACHE:-}" ]; then
  if [ "$(id -u)" = 0 ]; then rm -f /var/lib/containers/cache/blob-info-cache-v1.boltdb
  else rm -f "${XDG_DATA_HOME:-$HOME/.local/share}/containers/cache/blob-info-cache-v1.boltdb"; fi
fi
exec skopeo sync --all --preserve-digests --src docker --dest docker \
    --src-tls-verify=false --dest-tls-verify=false "$@" "$src" "$dstprefix-$n"
# Copied unchanged (but for this last line) from regbench: ../shared/regbench/sync-fresh.sh beside the crossdock repository.

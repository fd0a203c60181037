#!/usr/bin/env bash
# One real registry-to-registry copy with skopeo into a never-used destination repository.
#
#   copy-fresh.sh SRC_HOST:PORT/REPO:TAG DST_HOST:PORT/REPO_PREFIX [extra skopeo copy args ...]
#
# Destination repo = REPO_PREFIX-N, N from a counter file (REGBENCH_COUNTER, default
# /tmp/regbench/counter, incremented under flock), so no blob is already linked there.
# It also deletes skopeo's blob-info cache first (root: /var/lib/containers/cache/
# blob-info-cache-v1.boltdb): otherwise skopeo remembers that the blobs already sit in
# DST/REPO_PREFIX-(N-1) and mounts them cross-repo (POST ?mount=&from=) instead of copying bytes.
# REGBENCH_KEEP_CACHE=1 keeps the cache (to measure that mount path). Then it execs:
#   skopeo copy --all --preserve-digests --src-tls-verify=false --dest-tls-verify=false \
#       [extra args] docker://SRC docker://DST/REPO_PREFIX-N:TAG
set -euo pipefail
[ $# -ge 2 ] || { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
src=$1 dstprefix=$2; shift 2
counter=${REGBENCH_COUNTER:-/tmp/regbench/counter}
mkdir -p "$(dirname "$counter")"
n=$( exec 9>>"$counter.lock"; flock 9; c=$(cat "$counter" 2>/dev/null || echo 0); c=$((c+1)); echo "$c" > "$counter"; echo "$c" )
tag=${src##*:}
if [ -z "${REGBENCH_KEEP_CACHE:-}" ]; then
  if [ "$(id -u)" = 0 ]; then rm -f /var/lib/containers/cache/blob-info-cache-v1.boltdb
  else rm -f "${XDG_DATA_HOME:-$HOME/.local/share}/containers/cache/blob-info-cache-v1.boltdb"; fi
fi
exec skopeo copy -q --all --preserve-digests --src-tls-verify=false --dest-tls-verify=false "$@" \
    "docker://$src" "docker://$dstprefix-$n:$tag"
# Copied unchanged (but for this last line) from regbench: ../shared/regbench/copy-fresh.sh beside the crossdock repository.

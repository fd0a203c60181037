#!/usr/bin/env bash
# Fills a local registry with every repository and tag the registry rules of config.example.toml
# name, from the example image examples/hello (two platforms, a few KiB), so that those rules
# have something to mirror. Start the two registries first:
#
#   bench/regbench/start-registries.sh 5000 5001    # docker-registry on 127.0.0.1:5000 and :5001
#   examples/seed-registries.sh [HOST:PORT]         # default localhost:5000
#   cargo run --release -- run --config config.example.toml
#   bench/regbench/stop-registries.sh 5000 5001     # afterwards
#
# Uses target/release/crossdock (built if missing), or CROSSDOCK_BIN=PATH.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$HERE")
SRC=${1:-localhost:5000}
CD=${CROSSDOCK_BIN:-}
if [ -z "$CD" ]; then
  (cd "$REPO" && cargo build --release --quiet --bin crossdock)
  CD=${CARGO_TARGET_DIR:-$REPO/target}/release/crossdock
fi
hello=oci:$HERE/hello
# One import; its progress only when it fails.
import() { out=$("$CD" import "$@" 2>&1) || { echo "$out" >&2; exit 1; }; }

# rule "alpine": tags 3.20 and latest
# rule "tools": busybox and debian, version tags (newest 3 at or above 1.0) and latest
# rule "pinned-releases": redis tags in ~7.2
for target in library/alpine:3.20 library/alpine:latest \
  library/busybox:1.35 library/busybox:1.36 library/busybox:1.37 library/busybox:latest \
  library/debian:11 library/debian:12 library/debian:latest \
  library/redis:7.2.4 library/redis:7.2.5 library/redis:7.4.0; do
  import "$hello:1.0" "$SRC/$target"
  echo "seeded $SRC/$target"
done
# index rule "app-latest": two single-platform images
for arch in amd64 arm64; do
  import "$hello:$arch" "$SRC/app:$arch"
  echo "seeded $SRC/app:$arch"
done

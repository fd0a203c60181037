#!/usr/bin/env bash
# The runtime image in CI (run by .ci/run): built twice without Docker, with the same digest,
# then run under containerd + runc by deploy/image/e2e.py (mirroring, probes, SIGTERM, shards).
#
#   deploy/image/ci-run.sh      (CROSSDOCK_RELEASE_BIN=PATH: use that release binary)
#
# Needs root or passwordless sudo (containerd, runc), and containerd, ctr, runc,
# docker-registry and python3 installed: a missing one fails the check, naming it.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
cd "$REPO"

missing=()
for tool in containerd ctr runc docker-registry python3 ldd git; do
  command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "FAIL: missing ${missing[*]} (Debian packages containerd, runc, docker-registry; .ci/run installs them)" >&2
  exit 1
fi

bin=${CROSSDOCK_RELEASE_BIN:-}
if [ -z "$bin" ]; then
  echo "==> image: cargo build --release --locked"
  nice -n 10 cargo build --release --locked --quiet --bin crossdock
  bin=${CARGO_TARGET_DIR:-$REPO/target}/release/crossdock
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/crossdock-image-ci.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
SOURCE_DATE_EPOCH=$(git log -1 --format=%ct)
export SOURCE_DATE_EPOCH

echo "==> image: built twice from the same inputs (SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH)"
first=$(deploy/image/build.sh --binary "$bin" --layout "$WORK/first")
second=$(deploy/image/build.sh --binary "$bin" --layout "$WORK/second")
echo "    $first"
echo "    $second"
if [ "$first" != "$second" ] || ! diff -r "$WORK/first" "$WORK/second" >/dev/null; then
  echo "FAIL: two builds of the same inputs differ" >&2
  exit 1
fi
# The timestamp is an input: a check that it is used, so that the comparison above can fail.
later=$(SOURCE_DATE_EPOCH=$((SOURCE_DATE_EPOCH + 1)) deploy/image/build.sh --binary "$bin" --layout "$WORK/later")
if [ "$later" = "$first" ]; then
  echo "FAIL: SOURCE_DATE_EPOCH does not reach the image ($later either way)" >&2
  exit 1
fi
echo "    same digest; one second later: $later"
rm -rf "$WORK/second" "$WORK/later"

echo "==> image: run under containerd + runc"
python3 deploy/image/e2e.py --layout "$WORK/first" --crossdock "$bin"
echo "==> image: all checks passed"

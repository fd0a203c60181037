#!/usr/bin/env bash
# Builds crossdock's runtime image without Docker and without the internet, reproducibly, and
# optionally pushes it with crossdock itself:
#
#   deploy/image/build.sh [--binary PATH] [--layout DIR] [--tag TAG] [--push REGISTRY/REPO:TAG]
#
#   --binary   the crossdock executable to put in the image (default: `cargo build --release
#              --locked`, then target/release/crossdock)
#   --layout   the OCI layout folder to write, replaced if it holds a layout (default:
#              target/image/crossdock)
#   --tag      the tag inside the layout (default: the version in Cargo.toml)
#   --push     then `crossdock import oci:LAYOUT:TAG REF` (loopback registries over plain HTTP;
#              credentials from Docker's config.json, as for any import)
#
# deploy/image/assemble.py does the work (see its header for what goes in); this script picks
# the inputs. Timestamps are SOURCE_DATE_EPOCH, or the time of the last commit when it is not
# set, so that two builds of one commit give the same digest. Prints the image's digest.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$REPO/target}

binary="" layout="$TARGET/image/crossdock" tag="" push=""
while [ $# -gt 0 ]; do
  case "$1" in
    --binary | --layout | --tag | --push)
      [ $# -ge 2 ] || { echo "error: $1 needs a value" >&2; exit 2; }
      declare "${1#--}=$2"
      shift 2
      ;;
    -h | --help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "error: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

if [ -z "$binary" ]; then
  (cd "$REPO" && cargo build --release --locked --quiet --bin crossdock)
  binary=$TARGET/release/crossdock
fi
if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
  SOURCE_DATE_EPOCH=$(git -C "$REPO" log -1 --format=%ct 2>/dev/null) || {
    echo "error: not a git checkout: set SOURCE_DATE_EPOCH (seconds since 1970)" >&2
    exit 1
  }
fi
export SOURCE_DATE_EPOCH

# Replace a layout this script wrote before; never a folder that is something else.
if [ -e "$layout" ]; then
  if [ -f "$layout/oci-layout" ]; then
    rm -rf "$layout"
  elif [ -n "$(ls -A "$layout")" ]; then
    echo "error: $layout exists and is not an OCI layout: choose another --layout" >&2
    exit 1
  fi
fi
mkdir -p "$(dirname "$layout")"

tag_args=()
[ -n "$tag" ] && tag_args=(--tag "$tag")
digest=$(python3 "$HERE/assemble.py" --binary "$binary" --out "$layout" "${tag_args[@]}")
[ -n "$tag" ] || tag=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"])' "$layout/index.json")

if [ -n "$push" ]; then
  "$binary" import "oci:$layout:$tag" "$push" >&2
fi
echo "$digest"

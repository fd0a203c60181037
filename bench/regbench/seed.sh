#!/usr/bin/env bash
# Push every tag (or the named tags) of an OCI layout directory into a registry with skopeo.
#
#   seed.sh [--creds USER:PASS] OCIDIR HOST:PORT REPO [TAG ...]
#
# Runs, per tag (for a --format docker layout the source is dir:OCIDIR/dir/TAG instead):  skopeo copy --all --preserve-digests --dest-tls-verify=false \
#                   oci:OCIDIR:TAG docker://HOST:PORT/REPO:TAG
# --preserve-digests makes skopeo fail rather than rewrite any manifest, so the registry ends up
# with exactly the layout's index/manifest-list digests (OCI index or Docker manifest list,
# whichever make-image.py --format wrote). Afterwards it checks the pushed digest with a HEAD.
set -euo pipefail
CREDS=""
if [ "${1:-}" = "--creds" ]; then CREDS=$2; shift 2; fi
[ $# -ge 3 ] || { sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
dir=$1 hp=$2 repo=$3; shift 3
if [ $# -gt 0 ]; then tags=("$@"); else
  mapfile -t tags < <(python3 -c 'import json,sys
for m in json.load(open(sys.argv[1]+"/index.json"))["manifests"]:
    t=m.get("annotations",{}).get("org.opencontainers.image.ref.name")
    if t: print(t)' "$dir")
fi
credargs=(); curlauth=()
if [ -n "$CREDS" ]; then credargs=(--dest-creds "$CREDS"); curlauth=(-u "$CREDS"); fi
for tag in "${tags[@]}"; do
  want=$(python3 -c 'import json,sys
for m in json.load(open(sys.argv[1]+"/index.json"))["manifests"]:
    if m.get("annotations",{}).get("org.opencontainers.image.ref.name")==sys.argv[2]: print(m["digest"], m["mediaType"])' "$dir" "$tag")
  src="oci:$dir:$tag"
  # make-image.py --format docker: Docker manifest list, pushed from the dir: transport copy
  [ -f "$dir/dir/$tag/version" ] && src="dir:$dir/dir/$tag"
  skopeo copy -q --all --preserve-digests --dest-tls-verify=false "${credargs[@]}" \
      "$src" "docker://$hp/$repo:$tag"
  got=$(curl -sfI "${curlauth[@]}" \
      -H 'Accept: application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json' \
      "http://$hp/v2/$repo/manifests/$tag" | tr -d '\r' | awk -F': ' 'tolower($1)=="docker-content-digest"{d=$2} tolower($1)=="content-type"{t=$2} END{print d, t}')
  if [ "$got" = "$want" ]; then echo "seeded $hp/$repo:$tag $got"
  else echo "MISMATCH $hp/$repo:$tag: layout has '$want', registry has '$got'" >&2; exit 1; fi
done
# Copied unchanged (but for this last line) from regbench: ../shared/regbench/seed.sh beside the crossdock repository.

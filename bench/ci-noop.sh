#!/usr/bin/env bash
# Case d of the benchmark as a CI check: a no-op re-import costs exactly one request at each
# registry (the HEAD of the tag), plus the auth challenge when the registry asks for credentials.
#
#   bench/ci-noop.sh            (builds target/release/crossdock; CROSSDOCK_BIN=PATH uses that binary)
#
# Starts two loopback `docker-registry` processes (bench/regbench/start-registries.sh, in a temp
# dir), makes the benchmark images a (3 platforms x 4 x 16 MiB) and b (5 x 10 x 2 MiB) and c
# reduced to one 64 MiB layer (bench/regbench/make-image.py, deterministic), pushes them to A
# (bench/push_layout.py), imports each into B once, then imports it again and counts the lines
# each registry's access log gained (bench/regbench/reqcount.py): each must be exactly one
# `HEAD /v2/<repo>/manifests/v1`, answered 200. Then the same with basic auth on both registries
# (htpasswd from apache2-utils): one 401 challenge plus that HEAD. A missing tool fails the
# check with its name (`.ci/run` installs them all); nothing is skipped. Counts, not timings: the
# check is deterministic, takes ~30 s once built, and exits non-zero on any other count.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$HERE")
RB=$HERE/regbench

CD=${CROSSDOCK_BIN:-}
if [ -z "$CD" ]; then
  (cd "$REPO" && cargo build --release --quiet --bin crossdock)
  CD=${CARGO_TARGET_DIR:-$REPO/target}/release/crossdock
fi
[ -x "$CD" ] || { echo "no crossdock binary at $CD" >&2; exit 2; }
for tool in python3 curl htpasswd; do
  command -v "$tool" >/dev/null 2>&1 ||
    { echo "ci-noop: $tool is not installed (.ci/run installs it: apt-get install python3 curl apache2-utils)" >&2; exit 2; }
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/crossdock-ci-noop.XXXXXX")
export REGBENCH_BASE=$WORK/registries REGBENCH_COUNTER=$WORK/counter
ports=()
cleanup() {
  [ ${#ports[@]} -gt 0 ] && "$RB/stop-registries.sh" -d "$REGBENCH_BASE" --purge "${ports[@]}" >/dev/null 2>&1
  rm -rf "$WORK"
}
trap cleanup EXIT

free_ports() {
  python3 -c 'import socket
ss=[socket.socket() for _ in range('"$1"')]
for s in ss: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in ss))'
}

# Images: the benchmark's a and b, and c with a 64 MiB layer instead of 1 GiB (a no-op moves no
# bytes, so the size changes nothing but the set-up time).
declare -A SPEC=([a]="-p 3 -l 4 -s 16M" [b]="-p 5 -l 10 -s 2M" [c]="-p 1 -l 1 -s 64M")
for s in a b c; do
  python3 "$RB/make-image.py" "$WORK/img/$s" ${SPEC[$s]} --tag v1 >/dev/null
done

failures=0
# check LABEL A_HP B_HP EXPECTED_JSON CROSSDOCK_ARGS...: imports each image twice, checks the second.
check() {
  local label=$1 pa=$2 pb=$3 expected=$4; shift 4
  for s in a b c; do
    python3 "$HERE/push_layout.py" "$WORK/img/$s" "127.0.0.1:$pa/bench/$s" ${PUSH_AUTH:+--auth "$PUSH_AUTH"} >/dev/null
    "$CD" import "$@" "127.0.0.1:$pa/bench/$s:v1" "127.0.0.1:$pb/noop-$s:v1" >"$WORK/first-$s.log" 2>&1 ||
      { cat "$WORK/first-$s.log" >&2; exit 1; }
    local got
    got=$(python3 "$RB/reqcount.py" -d "$REGBENCH_BASE" "$pa,$pb" -- \
            "$CD" import "$@" "127.0.0.1:$pa/bench/$s:v1" "127.0.0.1:$pb/noop-$s:v1" 2>/dev/null)
    if python3 - "$got" "$expected" "$pa" "$pb" <<'PY'
import json, sys
got, want, pa, pb = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3], sys.argv[4]
ok = got["rc"] == 0
for port in (pa, pb):
    r = got["registries"][port]
    seen = {"by_method_route": r["by_method_route"], "by_status": r["by_status"]}
    ok = ok and seen == want
sys.exit(0 if ok else 1)
PY
    then
      echo "ok   $label no-op re-import of $s: $(python3 -c 'import json,sys
d, pa = json.loads(sys.argv[1]), sys.argv[2]
print("; ".join("%s %s" % ("source" if p == pa else "target", v["by_method_route"]) for p, v in d["registries"].items()))' "$got" "$pa")"
    else
      echo "FAIL $label no-op re-import of $s: expected at each registry $expected, got:" >&2
      echo "$got" >&2
      failures=$((failures + 1))
    fi
  done
}

read -r PA PB < <(free_ports 2)
ports+=("$PA" "$PB")
"$RB/start-registries.sh" -d "$REGBENCH_BASE" "$PA" "$PB" >/dev/null
check "no auth:" "$PA" "$PB" '{"by_method_route": {"HEAD manifest": 1}, "by_status": {"200": 1}}'

read -r PC PD < <(free_ports 2)
ports+=("$PC" "$PD")
"$RB/start-registries.sh" -d "$REGBENCH_BASE" --auth ci:ci-secret "$PC" "$PD" >/dev/null
PUSH_AUTH=ci:ci-secret check "basic auth:" "$PC" "$PD" \
  '{"by_method_route": {"HEAD manifest": 2}, "by_status": {"200": 1, "401": 1}}' \
  --src-creds ci:ci-secret --dest-creds ci:ci-secret

if [ "$failures" -gt 0 ]; then
  echo "ci-noop: $failures no-op re-import(s) made other requests than the one HEAD of the tag" >&2
  exit 1
fi
echo "ci-noop: every no-op re-import cost exactly one request at each registry"

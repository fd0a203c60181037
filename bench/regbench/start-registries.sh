#!/usr/bin/env bash
# Start N private docker-registry (CNCF distribution 2.8) processes on loopback.
#
#   start-registries.sh [-d BASEDIR] [--auth USER:PASS] [--level LEVEL] PORT [PORT ...]
#
# For each PORT this creates BASEDIR/PORT/{config.yml,storage/,registry.log,registry.pid}
# and starts `docker-registry serve BASEDIR/PORT/config.yml` detached (setsid), listening
# on 127.0.0.1:PORT only, filesystem storage under BASEDIR/PORT/storage, delete enabled,
# access log + app log (info) written to BASEDIR/PORT/registry.log.
# --auth USER:PASS adds htpasswd basic auth (bcrypt; needs `htpasswd` from apache2-utils).
# The Debian system service is never touched. Stop with stop-registries.sh (by PID).
set -euo pipefail

BASE=${REGBENCH_BASE:-/tmp/regbench/registries}
AUTH=""
LEVEL=info
REGISTRY_BIN=${REGISTRY_BIN:-/usr/bin/docker-registry}
usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
ports=()
while [ $# -gt 0 ]; do
  case "$1" in
    -d) BASE=$2; shift 2 ;;
    --auth) AUTH=$2; shift 2 ;;
    --level) LEVEL=$2; shift 2 ;;
    -h|--help) usage ;;
    *) ports+=("$1"); shift ;;
  esac
done
[ ${#ports[@]} -gt 0 ] || usage
[ -x "$REGISTRY_BIN" ] || { echo "missing $REGISTRY_BIN: apt-get install -y docker-registry" >&2; exit 1; }

for port in "${ports[@]}"; do
  dir=$BASE/$port
  mkdir -p "$dir/storage"
  if [ -f "$dir/registry.pid" ] && kill -0 "$(cat "$dir/registry.pid")" 2>/dev/null; then
    echo "port $port: already running as PID $(cat "$dir/registry.pid")" >&2; continue
  fi
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "port $port: something else is already listening on 127.0.0.1:$port" >&2; exit 1
  fi
  authblock=""
  if [ -n "$AUTH" ]; then
    command -v htpasswd >/dev/null || { echo "need htpasswd: apt-get install -y apache2-utils" >&2; exit 1; }
    htpasswd -Bbn "${AUTH%%:*}" "${AUTH#*:}" > "$dir/htpasswd"
    authblock="auth:
  htpasswd:
    realm: regbench
    path: $dir/htpasswd"
  fi
  cat > "$dir/config.yml" <<CFG
version: 0.1
log:
  level: $LEVEL
  formatter: text
  accesslog:
    disabled: false
  fields:
    service: registry
    port: $port
storage:
  filesystem:
    rootdirectory: $dir/storage
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:$port
  secret: regbench-not-a-secret-$port
  headers:
    X-Content-Type-Options: [nosniff]
health:
  storagedriver:
    enabled: false
$authblock
CFG
  # setsid: own session, survives the calling shell; the sh writes its own PID then execs
  # the registry, so the PID file holds the registry's PID.
  setsid sh -c 'echo $$ > "$1"; exec "$2" serve "$3"' regbench "$dir/registry.pid" \
      "$REGISTRY_BIN" "$dir/config.yml" >>"$dir/registry.log" 2>&1 </dev/null &
  ok=""
  for _ in $(seq 1 100); do
    if code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/v2/") && { [ "$code" = 200 ] || [ "$code" = 401 ]; }; then ok=1; break; fi
    sleep 0.1
  done
  [ -n "$ok" ] || { echo "port $port: registry did not come up, see $dir/registry.log" >&2; exit 1; }
  echo "registry 127.0.0.1:$port pid=$(cat "$dir/registry.pid") storage=$dir/storage log=$dir/registry.log${AUTH:+ auth=basic}"
done
# Copied unchanged (but for this last line) from regbench: ../shared/regbench/start-registries.sh beside the crossdock repository.

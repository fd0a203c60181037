#!/usr/bin/env bash
# Replays the committed corpus and past findings of every fuzz target (or of those named) once,
# without fuzzing: `-runs=0` executes each input and stops. Needs cargo-fuzz
# (`cargo install cargo-fuzz --locked`); on stable Rust, RUSTC_BOOTSTRAP=1 lets it use the
# nightly-only sanitizer flags. CI does the same on stable with `cargo test --test fuzz_corpus`.
set -euo pipefail
cd "$(dirname "$0")/.."

targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(reference manifest challenge config)
for t in "${targets[@]}"; do
  dirs=("fuzz/corpus/$t")
  [ -d "fuzz/regressions/$t" ] && dirs+=("fuzz/regressions/$t")
  echo "==> $t: ${dirs[*]}"
  RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer none --debug-assertions "$t" "${dirs[@]}" -- -runs=0
done

#!/usr/bin/env bash
# Fuzzes one target until its coverage plateaus: runs libFuzzer on the committed corpus (new
# inputs land in fuzz/corpus/TARGET) and stops once QUIET minutes pass without a new edge
# (`cov` unchanged), or after MAX minutes in all. Prints the final cov, ft, corpus size, total
# minutes and minutes since the last new edge (`cov`) and the last new feature (`ft`): the
# numbers the README's "Fuzzing" table records.
#
#   fuzz/plateau.sh TARGET [QUIET_MINUTES=10] [MAX_MINUTES=60]
#
# Coverage is counted on crossdock's own code: the build instruments crossdock and this crate,
# not the dependencies (see own-coverage.sh), into fuzz/target/own. FUZZ_COVERAGE=all
# instruments everything, into fuzz/target, as cargo-fuzz does by default.
#
# One worker, niced: the machines it runs on are shared. Needs cargo-fuzz and a nightly
# toolchain (`cargo +nightly`). A finding (crash, timeout, leak) stops the run with libFuzzer's
# exit code; its input is in fuzz/artifacts/TARGET/ — fix the cause, then keep the input under
# fuzz/regressions/TARGET/ so that tests/fuzz_corpus.rs replays it.
set -euo pipefail
cd "$(dirname "$0")"

target=${1:?usage: fuzz/plateau.sh TARGET [QUIET_MINUTES] [MAX_MINUTES]}
quiet=$((${2:-10} * 60))
max=$((${3:-60} * 60))

# FUZZ_COVERAGE picks the build: own (the default) or all, each in its own target directory.
case ${FUZZ_COVERAGE:-own} in
  own)
    target_dir=$PWD/target/own
    wrap=(env "RUSTC_WRAPPER=$PWD/own-coverage.sh" "FUZZ_INNER_WRAPPER=${RUSTC_WRAPPER:-}")
    ;;
  all)
    target_dir=$PWD/target
    wrap=()
    ;;
  *) echo "FUZZ_COVERAGE must be own or all, not '$FUZZ_COVERAGE'" >&2; exit 2 ;;
esac
# FUZZ_NO_BUILD=1 runs the binary built before (e.g. while the sources are being edited).
if [ "${FUZZ_NO_BUILD:-0}" != 1 ]; then
  "${wrap[@]}" nice -n 10 cargo +nightly fuzz build --sanitizer none --debug-assertions \
    --target-dir "$target_dir" "$target" >&2
fi
bin=$target_dir/x86_64-unknown-linux-gnu/release/$target
mkdir -p "artifacts/$target"
log=$(mktemp "${TMPDIR:-/tmp}/plateau-$target.XXXXXX.log")

# -max_total_time is the hard stop; the loop below stops the fuzzer earlier on a plateau. One
# process, one worker: libFuzzer's default. (Passing -jobs=1 would switch it to "jobs" mode,
# a child process logging to ./fuzz-0.log, which two targets run at once would share.)
nice -n 10 "$bin" "corpus/$target" -dict="dict/$target.dict" -max_total_time="$max" \
  -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
  -artifact_prefix="artifacts/$target/" >"$log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true' EXIT

start=$(date +%s)
cov_changed=$start
ft_changed=$start
last_cov=""
last_ft=""
stats() { grep -Eo 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -n 1 || true; }
while kill -0 "$pid" 2>/dev/null; do
  sleep 10
  now=$(date +%s)
  read -r _ cov _ ft <<<"$(stats)"
  if [ "${cov:-}" != "$last_cov" ]; then
    last_cov=${cov:-}
    cov_changed=$now
  fi
  if [ "${ft:-}" != "$last_ft" ]; then
    last_ft=${ft:-}
    ft_changed=$now
  fi
  # A plateau is QUIET minutes without a new edge. `ft` is not waited for: it also counts an
  # edge again each time an input runs it in a new hit-count bucket (1, 2, 3, 4-7, ... 128+),
  # which longer inputs keep doing without reaching new code. Its quiet time is printed apart.
  if [ $((now - cov_changed)) -ge "$quiet" ]; then
    kill -INT "$pid" 2>/dev/null || true
    break
  fi
done
rc=0
wait "$pid" || rc=$?
end=$(date +%s)
trap - EXIT

# Interrupted on a plateau (SIGINT) or at -max_total_time: both are a normal end.
if grep -Eq '^==[0-9]+== ERROR|^SUMMARY|Test unit written' "$log"; then
  tail -n 40 "$log" >&2
  echo "$target: FINDING, see $log and fuzz/artifacts/$target/" >&2
  exit "${rc:-1}"
fi
execs=$(grep -Eo 'stat::number_of_executed_units: [0-9]+' "$log" | grep -Eo '[0-9]+$' || echo '?')
echo "$target: $(stats) corpus: $(find "corpus/$target" -type f | wc -l) files," \
  "execs: $execs, total: $(((end - start) / 60)) min," \
  "quiet: cov $(((end - cov_changed) / 60)) min, ft $(((end - ft_changed) / 60)) min" \
  "(log: $log)"

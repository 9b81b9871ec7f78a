#!/bin/bash
# run.sh BUILD SECONDS NAME...: run each harness for SECONDS on its seed corpus
# (fuzz/corpus/NAME, read-only) plus a working corpus under BUILD; print one
# TAP line per harness and exit non-zero when any found something.
# FUZZ_JOBS harnesses run at once (default: the number of CPUs);
# FUZZ_ARGS adds libFuzzer flags; FUZZ_TIMEOUT is the per-input limit (10 s).
set -u
build=$1 secs=$2
shift 2
root=$(cd "$(dirname "$0")/.." && pwd)
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
jobs=${FUZZ_JOBS:-$(nproc 2>/dev/null || echo 1)}
mkdir -p "$build/logs"

# one harness: its TAP line (and the report's key lines) into logs/NAME.tap
one() {
  local name=$1 bin=$build/fuzz_$1 work=$build/corpus/$1 art=$build/artifacts/$1/ log=$build/logs/$1.log
  local args dict seeds rc stats rate
  mkdir -p "$work" "$art"
  args=(-max_total_time="$secs" -timeout="${FUZZ_TIMEOUT:-10}" -rss_limit_mb=2048 -print_final_stats=1
        -artifact_prefix="$art" -close_fd_mask=1)
  dict=$name
  case $name in reply|record|jsonl|webhook|journal) dict=json ;; esac # bodies and rows are JSON
  [ -f "$root/fuzz/dict/$dict.dict" ] && args+=(-dict="$root/fuzz/dict/$dict.dict")
  case $name in
    mock_http) args+=(-max_len=20000) ;; # past the 16 KiB head limit
    buf|reply|record|jsonl) args+=(-max_len=8192) ;;
    # a program of a few dozen bytes, a few inputs a second: full length from the start
    reentrancy) args+=(-max_len=256 -len_control=0) ;;
    *) args+=(-max_len=4096) ;;
  esac
  seeds=()
  [ -d "$root/fuzz/corpus/$name" ] && seeds=("$root/fuzz/corpus/$name")
  # libFuzzer adds new inputs to the first corpus dir: the repo's seeds stay as they are
  # shellcheck disable=SC2086
  "$bin" "${args[@]}" ${FUZZ_ARGS:-} "$work" "${seeds[@]}" >"$log" 2>&1
  rc=$?
  stats=$(grep -E '^#[0-9]+.*(DONE|pulse|NEW|REDUCE|INITED)' "$log" | tail -1 |
    sed -E 's/^#([0-9]+)[[:space:]]+[A-Z]+[[:space:]]+/\1 execs, /; s/ +exec\/s:.*//')
  rate=$(grep -E '^stat::average_exec_per_sec' "$log" | awk '{print $2}')
  if [ "$rc" -eq 0 ]; then
    echo "ok - fuzz $name # ${secs}s, ${stats:-?}, ${rate:-?} exec/s" >"$build/logs/$name.tap"
  else
    { echo "not ok - fuzz $name # exit $rc, log $log"
      grep -E -m 12 'ERROR|runtime error|property broken|error raised|escaped|SUMMARY|Test unit written|==[0-9]+==' "$log" |
        sed 's/^/#   /'; } >"$build/logs/$name.tap"
  fi
}

start=$(date +%s)
running=0
for name in "$@"; do
  rm -f "$build/logs/$name.tap"
  one "$name" &
  running=$((running + 1))
  if [ "$running" -ge "$jobs" ]; then wait -n; running=$((running - 1)); fi
done
wait
failed=0
for name in "$@"; do
  if [ -f "$build/logs/$name.tap" ]; then cat "$build/logs/$name.tap"; else echo "not ok - fuzz $name # did not run"; fi
  grep -q '^ok ' "$build/logs/$name.tap" 2>/dev/null || failed=1
done
echo "# fuzz: $# harnesses in $(( $(date +%s) - start )) s, $jobs at a time"
exit $failed

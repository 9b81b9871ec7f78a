#!/bin/bash
# run.sh BUILD SECONDS NAME...: run each harness for SECONDS on its seed corpus
# (fuzz/corpus/NAME, read-only) plus a working corpus under BUILD; print one
# TAP line per harness and exit non-zero when any found something.
# FUZZ_ARGS adds libFuzzer flags (e.g. -jobs=2 -workers=2).
set -u
build=$1 secs=$2
shift 2
root=$(cd "$(dirname "$0")/.." && pwd)
# libFuzzer writes new inputs to the first corpus dir: keep the repo's seeds clean
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
failed=0
start=$(date +%s)
for name in "$@"; do
  bin=$build/fuzz_$name
  work=$build/corpus/$name
  art=$build/artifacts/$name/
  log=$build/logs/$name.log
  mkdir -p "$work" "$art" "$build/logs"
  args=(-max_total_time="$secs" -timeout="${FUZZ_TIMEOUT:-10}" -rss_limit_mb=2048 -print_final_stats=1
        -artifact_prefix="$art" -close_fd_mask=1)
  dict=$name
  case $name in reply|record|jsonl|webhook) dict=json ;; esac # bodies and rows are JSON
  [ -f "$root/fuzz/dict/$dict.dict" ] && args+=(-dict="$root/fuzz/dict/$dict.dict")
  case $name in
    mock_http) args+=(-max_len=20000) ;; # past the 16 KiB head limit
    buf|reply|record|jsonl) args+=(-max_len=8192) ;;
    *) args+=(-max_len=4096) ;;
  esac
  seeds=()
  [ -d "$root/fuzz/corpus/$name" ] && seeds=("$root/fuzz/corpus/$name")
  # shellcheck disable=SC2086
  "$bin" "${args[@]}" ${FUZZ_ARGS:-} "$work" "${seeds[@]}" >"$log" 2>&1
  rc=$?
  stats=$(grep -E '^#[0-9]+.*(DONE|pulse|NEW|REDUCE|INITED)' "$log" | tail -1 |
    sed -E 's/^#([0-9]+)[[:space:]]+[A-Z]+[[:space:]]+/\1 execs, /; s/ +exec\/s:.*//')
  rate=$(grep -E '^stat::average_exec_per_sec' "$log" | awk '{print $2}')
  if [ "$rc" -eq 0 ]; then
    echo "ok - fuzz $name # ${secs}s, ${stats:-?}, ${rate:-?} exec/s"
  else
    failed=1
    echo "not ok - fuzz $name # exit $rc, log $log"
    grep -E -m 12 'ERROR|runtime error|property broken|error raised|escaped|SUMMARY|Test unit written|==[0-9]+==' "$log" |
      sed 's/^/#   /'
  fi
done
echo "# fuzz: $# harnesses in $(( $(date +%s) - start )) s"
exit $failed

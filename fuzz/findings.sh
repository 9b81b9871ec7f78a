#!/bin/bash
# findings.sh BUILD: replay every reproducer in fuzz/findings/<harness>/ on its
# harness with FUZZ_STRICT=1 (known findings checked, not skipped) and a 1 s
# timeout (10 s for reentrancy, which runs a client against the emulator).
# One TAP line each: "not ok" while the finding still reproduces,
# "ok" once the code under test is fixed (then drop its entry from the
# KNOWN lists: fuzz/lua/fuzzutil.lua, the skip in fuzz/reply.c, fuzz/buf.c).
set -u
build=$1
root=$(cd "$(dirname "$0")/.." && pwd)
export FUZZ_STRICT=1
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
failed=0
mkdir -p "$build/logs"
for f in "$root"/fuzz/findings/*/*; do
  name=$(basename "$(dirname "$f")")
  case $f in *.md) continue ;; esac
  log=$build/logs/finding-$name-$(basename "$f").log
  limit=1
  [ "$name" = reentrancy ] && limit=10 # a real client against the emulator: up to ~1.5 s by design
  if "$build/fuzz_$name" -runs=1 -timeout=$limit "$f" >"$log" 2>&1; then
    echo "ok - finding $name/$(basename "$f") no longer reproduces"
  else
    failed=1
    echo "not ok - finding $name/$(basename "$f") # still reproduces, log $log"
    grep -E -m 3 'runtime error|ERROR:|property broken|error raised|timeout after' "$log" | cut -c1-240 | sed 's/^/#   /'
  fi
done
exit $failed

#!/bin/sh
# deps.sh: install clang and its libFuzzer/sanitizer runtimes (Debian 12:
# clang-14 and libclang-rt-14-dev) when `clang -fsanitize=fuzzer` cannot link.
set -eu
cc=${FUZZ_CC:-clang}
probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
echo 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { (void)d; (void)n; return 0; }' > "$probe/p.c"
if command -v "$cc" >/dev/null 2>&1 &&
  "$cc" -fsanitize=fuzzer,address,undefined "$probe/p.c" -o "$probe/p" >/dev/null 2>&1; then
  exit 0
fi
echo "fuzz/deps.sh: installing clang and libclang-rt-dev"
sudo=""
[ "$(id -u)" = 0 ] || sudo=sudo
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q >/dev/null
$sudo apt-get install -y -q --no-install-recommends clang libclang-rt-dev >/dev/null

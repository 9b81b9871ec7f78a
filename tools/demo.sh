#!/bin/sh
# make demo: the main job as a user runs it, with no key and no network.
# Starts the gateway emulator on a free port, runs `modkie batch` over
# examples/batch/ (progress bar on a terminal), saves the videos into
# build/demo/videos, writes the review page beside them, prints the summary
# and the page's path, and stops the emulator on every way out (success,
# failure, Ctrl-C). The emulator runs with --media: its videos are real
# (small H.264 clips), so the page plays them. Then it animates three product
# stills it makes itself (examples/stills.lua): a CSV of local paths and a
# template (examples/products/), an image-to-video model from a schema file
# (examples/models/), each still uploaded before its job.
set -eu

LUA=${LUA:-lua5.4}
here=$(cd "$(dirname "$0")/.." && pwd)
out=${DEMO_DIR:-$here/build/demo}
job_seconds=${DEMO_JOB_SECONDS:-1.5}

rm -rf "$out"
mkdir -p "$out"

mock_pid=""
stop_mock() {
  if [ -n "$mock_pid" ]; then
    kill "$mock_pid" 2>/dev/null || true
    wait "$mock_pid" 2>/dev/null || true
    mock_pid=""
  fi
}
trap stop_mock EXIT
trap 'stop_mock; exit 130' INT
trap 'stop_mock; exit 143' TERM

# The emulator prints "listening http://HOST:PORT pid=PID ..." once it listens.
"$LUA" "$here/bin/modkie" mock --port 0 --job-seconds "$job_seconds" --media >"$out/mock.out" 2>"$out/mock.err" &
mock_pid=$!
url=""
tries=0
while [ -z "$url" ]; do
  url=$(sed -n 's/^listening \(http:[^ ]*\).*/\1/p' "$out/mock.out" 2>/dev/null || true)
  if [ -z "$url" ]; then
    if ! kill -0 "$mock_pid" 2>/dev/null || [ "$tries" -ge 100 ]; then
      echo "demo: the emulator did not start:" >&2
      cat "$out/mock.err" >&2
      exit 1
    fi
    tries=$((tries + 1))
    sleep 0.05
  fi
done

echo "demo: gateway emulator at $url (jobs take ${job_seconds}s)"
echo "demo: modkie batch --model kling/kling-3-0 --rows examples/batch/rows.csv \\"
echo "        --template examples/batch/template.txt --download $out/videos \\"
echo "        --review $out/videos/review.html"
echo

# A made-up key: the emulator takes any, and a real one never leaves for a test server.
status=0
MODKIE_BASE_URL="$url" MODKIE_API_KEY="demo-key" "$LUA" "$here/bin/modkie" batch \
  --model kling/kling-3-0 \
  --rows "$here/examples/batch/rows.csv" \
  --template "$here/examples/batch/template.txt" \
  --journal "$out/journal.jsonl" \
  --download "$out/videos" \
  --review "$out/videos/review.html" \
  --concurrency 6 || status=$?

echo
echo "demo: $(ls "$out/videos" 2>/dev/null | grep -c '\.mp4$') videos in $out/videos; journal in $out/journal.jsonl"
echo "demo: review page (open it in a browser): $out/videos/review.html"

# Product stills into videos: the rows name local files; each is uploaded, then its job sent.
products="$out/products"
mkdir -p "$products"
cp "$here/examples/products/rows.csv" "$here/examples/products/template.txt" "$products/"
"$LUA" "$here/examples/stills.lua" "$products" >/dev/null
echo
echo "demo: modkie batch --models examples/models/kling-v2-1-standard.json --model kling/v2-1-standard \\"
echo "        --rows $products/rows.csv --template $products/template.txt --download $products/videos"
echo
stills=0
MODKIE_BASE_URL="$url" MODKIE_API_KEY="demo-key" "$LUA" "$here/bin/modkie" batch \
  --models "$here/examples/models/kling-v2-1-standard.json" \
  --model kling/v2-1-standard \
  --rows "$products/rows.csv" \
  --template "$products/template.txt" \
  --download "$products/videos" \
  --review "$products/videos/review.html" || stills=$?
[ "$status" -ne 0 ] || status=$stills

echo
echo "demo: $(ls "$products/videos" 2>/dev/null | grep -c '\.mp4$') videos from the stills in $products/stills: $products/videos"
echo "demo: their review page: $products/videos/review.html"
exit "$status"

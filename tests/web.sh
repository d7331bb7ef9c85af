#!/usr/bin/env bash
# The server, web page and chat CLI end to end (tests/web/*.test.mjs): the
# openai npm client, a load test, kill -9 and restart, headless Chromium, the
# terminal chat. Runs each file with node's test runner against
# BUILD_DIR/pocketllm and ends with "N passed, M failed, K skipped".
# Skips (with the reason) when node or tests/web/node_modules is missing:
# install with `apt-get install nodejs npm chromium` and `(cd tests/web && npm ci)`.
# Usage: bash tests/web.sh [BUILD_DIR]
set -u
B=${1:-build}
cd "$(dirname "$0")/.."
root=$PWD
skip() {
    echo "skipped: $*"
    echo "0 passed, 0 failed, 1 skipped"
    exit 0
}
command -v node >/dev/null 2>&1 || skip "node is not installed (apt-get install nodejs npm)"
[ -d tests/web/node_modules/openai ] && [ -d tests/web/node_modules/playwright-core ] ||
    skip "tests/web/node_modules is missing: run (cd tests/web && npm ci)"
bin=$root/$B/pocketllm
if [ ! -x "$bin" ]; then
    echo "no $bin: build it first (make)"
    echo "0 passed, 1 failed, 0 skipped"
    exit 1
fi
shared=${PL_SHARED:-$root/../shared}
[ -d "$shared/models" ] || skip "$shared/models not found"

pass=0 fail=0 skipped=0
for f in tests/web/*.test.mjs; do
    name=$(basename "$f")
    out=$(cd tests/web && POCKETLLM_BIN="$bin" PL_SHARED="$shared" PL_BUILD_DIR="$root/$B" \
        timeout 900 node --test --test-reporter=tap "$name" 2>&1)
    rc=$?
    num() { printf '%s\n' "$out" | sed -n "s/^# $1 \([0-9][0-9]*\)$/\1/p" | tail -n 1; }
    p=$(num pass) f_=$(num fail) s=$(num skipped) c=$(num cancelled)
    p=${p:-0} f_=${f_:-0} s=${s:-0} c=${c:-0}
    f_=$((f_ + c))
    if [ "$rc" -ne 0 ] && [ "$f_" -eq 0 ]; then f_=1; fi
    echo "$name: $p passed, $f_ failed, $s skipped"
    if [ "$f_" -gt 0 ]; then
        printf '%s\n' "$out" | sed 's/^/    /'
    else
        printf '%s\n' "$out" | grep -E '^# (SKIP|max RSS)|# SKIP' | sed 's/^/    /'
    fi
    pass=$((pass + p)) fail=$((fail + f_)) skipped=$((skipped + s))
done
echo "$pass passed, $fail failed, $skipped skipped"
[ "$fail" -eq 0 ]

#!/usr/bin/env bash
# Runs every test binary in build/tests and every script in tests/ref, sums
# their "N passed, M failed, K skipped" lines and ends with the total.
# Usage: tests/run.sh [BUILD_DIR]   (PL_TEST_FILTER=substring runs a subset)
set -u
B=${1:-build}
pass=0 fail=0 skip=0
failed_units=()
run_unit() {
    local name=$1; shift
    case "$name" in *"${PL_TEST_FILTER:-}"*) ;; *) return ;; esac
    echo "== $name"
    local out rc
    out=$("$@" 2>&1); rc=$?
    printf '%s\n' "$out" | sed 's/^/   /'
    local line
    line=$(printf '%s\n' "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed' | tail -n 1)
    if [ -z "$line" ]; then
        echo "   (no result line, exit $rc): counted as 1 failed"
        fail=$((fail + 1)); failed_units+=("$name"); return
    fi
    local p f s
    p=$(echo "$line" | sed -E 's/^([0-9]+) passed.*/\1/')
    f=$(echo "$line" | sed -E 's/.* ([0-9]+) failed.*/\1/')
    s=$(echo "$line" | sed -nE 's/.* ([0-9]+) skipped.*/\1/p'); s=${s:-0}
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
    pass=$((pass + p)); fail=$((fail + f)); skip=$((skip + s))
    [ "$f" -gt 0 ] && failed_units+=("$name")
}
for t in "$B"/tests/test_*; do
    [ -x "$t" ] || continue
    run_unit "$(basename "$t")" "$t"
done
for s in tests/ref/*.py; do
    [ -f "$s" ] || continue
    run_unit "$(basename "$s")" python3 "$s" "$B/pocketllm"
done
for s in tests/*.sh; do
    [ "$(basename "$s")" = run.sh ] && continue
    [ -f "$s" ] || continue
    run_unit "$(basename "$s")" bash "$s" "$B"
done
if [ ${#failed_units[@]} -gt 0 ]; then echo "failing: ${failed_units[*]}"; fi
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]

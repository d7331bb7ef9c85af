#!/usr/bin/env bash
# The CPU speed table of the performance issue, on files pocketllm makes
# itself: a random 1.04B llama (dim 2048, 16 layers, 32 heads, 8 KV heads,
# FFN 8192, 32000 vocab, tied) written by `pocketllm make-random` as F16, then
# `pocketllm quantize`d to Q4_0, Q8_0 and Q4_K_M (llama-quantize's recipes and
# bytes, --reference), each measured by `pocketllm bench` (pp128, tg32) with 2
# threads and 1 thread. llama.cpp's figures (Feb 2025, native build, 2 threads,
# same machine class) are printed beside ours with the ratio. Files live in a
# temporary folder (about 4 GB at peak) and are deleted at the end.
# Usage: bench/run_cpu.sh [BUILD_DIR]     Figures only; nothing is asserted.
set -eu
B=${1:-build}
CLI=$B/pocketllm
cd "$(dirname "$0")/.."
vocab=../shared/models/kjv-llama-f16.gguf  # a 32000-token Llama-2 vocabulary
[ -f "$vocab" ] || { echo "run_cpu: $vocab is needed for the 32000-token vocabulary; skipped"; exit 0; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/pl_bench_cpu.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
$CLI make-random -o "$tmp/f16.gguf" --vocab-from "$vocab" --type f16 >/dev/null
for t in Q4_0 Q8_0 Q4_K_M; do
    $CLI quantize "$tmp/f16.gguf" "$tmp/$t.gguf" "$t" --reference -q
done
rm -f "$tmp/f16.gguf"
json() { sed -n "s/.*\"$2\":\([0-9.e+-]*\).*/\1/p" "$1"; }
printf '\n%-8s | %10s %10s %6s | %10s %10s %6s | %10s %8s\n' type "pp128 t2" llama.cpp ratio "tg32 t2" llama.cpp ratio "tg32 t1" "bw t2"
for t in Q4_0:179:52.8 Q8_0:125:31.9 Q4_K_M:84:44.7; do
    name=${t%%:*} rest=${t#*:} ref_pp=${rest%%:*} ref_tg=${rest#*:}
    $CLI bench -m "$tmp/$name.gguf" -p 128 -n 32 -t 2 -r 3 --json > "$tmp/t2.json"
    $CLI bench -m "$tmp/$name.gguf" -p 128 -n 32 -t 1 -r 3 --json > "$tmp/t1.json"
    pp=$(json "$tmp/t2.json" pp_tok_s) tg=$(json "$tmp/t2.json" tg_tok_s) tg1=$(json "$tmp/t1.json" tg_tok_s)
    bwf=$(json "$tmp/t2.json" bandwidth_fraction)
    awk -v n="$name" -v pp="$pp" -v rpp="$ref_pp" -v tg="$tg" -v rtg="$ref_tg" -v tg1="$tg1" -v bwf="$bwf" 'BEGIN {
        printf "%-8s | %10.1f %10.1f %5.2fx | %10.1f %10.1f %5.2fx | %10.1f %7.1f%%\n", n, pp, rpp, pp / rpp, tg, rtg, tg / rtg, tg1, 100 * bwf }'
done
echo "(tok/s; bw t2 = weight bytes per token x tg32 over the machine's measured 2-thread read bandwidth)"

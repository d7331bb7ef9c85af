#!/usr/bin/env bash
# The CPU speed table of the performance issue, on files pocketllm makes
# itself: a random 1.04B llama (dim 2048, 16 layers, 32 heads, 8 KV heads,
# FFN 8192, 32000 vocab, tied) written by `pocketllm make-random` as F16, then
# `pocketllm quantize`d to Q4_0, Q8_0 and Q4_K_M (llama-quantize's recipes and
# bytes, --reference), each measured by `pocketllm bench` (pp128, tg32) with 2
# threads and 1 thread. llama.cpp's figures (Feb 2025, native build, 2 threads,
# same machine class) are printed beside ours with the ratio. Files live in a
# temporary folder (about 4 GB at peak) and are deleted at the end. With
# LLAMA_BENCH=PATH (llama.cpp's llama-bench), llama.cpp runs the same files;
# PL_BENCH_FILES=DIR keeps the files there and reuses them on the next run.
# PL_BENCH_ROUNDS=N (default 1) repeats every measurement N times and prints
# medians: one round's figures move by 10-25 % on a shared VM.
# Usage: bench/run_cpu.sh [BUILD_DIR]     Figures only; nothing is asserted.
set -eu
B=${1:-build}
CLI=$B/pocketllm
ROUNDS=${PL_BENCH_ROUNDS:-1}
cd "$(dirname "$0")/.."
vocab=../shared/models/kjv-llama-f16.gguf  # a 32000-token Llama-2 vocabulary
[ -f "$vocab" ] || { echo "run_cpu: $vocab is needed for the 32000-token vocabulary; skipped"; exit 0; }
if [ -n "${PL_BENCH_FILES:-}" ]; then
    tmp=$PL_BENCH_FILES # Q4_0.gguf Q8_0.gguf Q4_K_M.gguf from an earlier run: kept
    mkdir -p "$tmp"
else
    tmp=$(mktemp -d "${TMPDIR:-/tmp}/pl_bench_cpu.XXXXXX")
    trap 'rm -rf "$tmp"' EXIT
fi
if [ ! -f "$tmp/Q4_0.gguf" ] || [ ! -f "$tmp/Q8_0.gguf" ] || [ ! -f "$tmp/Q4_K_M.gguf" ]; then
    $CLI make-random -o "$tmp/f16.gguf" --vocab-from "$vocab" --type f16 >/dev/null
    for t in Q4_0 Q8_0 Q4_K_M; do
        $CLI quantize "$tmp/f16.gguf" "$tmp/$t.gguf" "$t" --reference -q
    done
    rm -f "$tmp/f16.gguf"
fi
json() { sed -n "s/.*\"$2\":\([0-9.e+-]*\).*/\1/p" "$1"; }
# llama.cpp's llama-bench on the same files and cores, when LLAMA_BENCH names
# one (built beside the project: see the README's performance section).
LB=${LLAMA_BENCH:-}
[ -n "$LB" ] && [ ! -x "$LB" ] && { echo "run_cpu: LLAMA_BENCH=$LB is not executable; its columns are left out"; LB=; }
llama() { # FILE THREADS -> "pp tg" tok/s
    "$LB" -m "$1" -p 128 -n 32 -t "$2" -r 3 -o json 2>/dev/null |
        python3 -c 'import json,sys; d=json.load(sys.stdin); print(*[next(x["avg_ts"] for x in d if (x["n_gen"]>0)==g) for g in (False,True)])'
}
printf '\n%-8s | %9s %9s %6s | %9s %9s %6s | %9s %9s | %8s\n' type "pp128 t2" "issue" ratio "tg32 t2" "issue" ratio \
    "tg32 t1" "--no-rpk" "bw t2"
[ -n "$LB" ] && printf '%-8s | %9s %9s %6s | %9s %9s %6s | %9s %9s |\n' "" "" "llama.cpp" ratio "" "llama.cpp" ratio \
    "llama.cpp" "ratio"
# Column C's median over the rounds' lines in FILE.
median() { awk -v c="$2" '{ print $c }' "$1" | sort -g | awk '{ v[NR] = $1 } END { print NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
for t in Q4_0:179:52.8 Q8_0:125:31.9 Q4_K_M:84:44.7; do
    name=${t%%:*} rest=${t#*:} ref_pp=${rest%%:*} ref_tg=${rest#*:}
    : > "$tmp/rounds"
    for _ in $(seq "$ROUNDS"); do # each round: ours, then llama.cpp's, back to back
        $CLI bench -m "$tmp/$name.gguf" -p 128 -n 32 -t 2 -r 3 --json > "$tmp/t2.json"
        $CLI bench -m "$tmp/$name.gguf" -p 128 -n 32 -t 1 -r 3 --json > "$tmp/t1.json"
        $CLI bench -m "$tmp/$name.gguf" -p 128 -n 32 -t 2 -r 3 --json --no-repack > "$tmp/nr.json"
        lpp=0 ltg=0 ltg1=0
        if [ -n "$LB" ]; then
            read -r lpp ltg < <(llama "$tmp/$name.gguf" 2)
            read -r _ ltg1 < <(llama "$tmp/$name.gguf" 1)
        fi
        pp=$(json "$tmp/t2.json" pp_tok_s) tg=$(json "$tmp/t2.json" tg_tok_s)
        echo "$pp $tg $(json "$tmp/t1.json" tg_tok_s) $(json "$tmp/nr.json" tg_tok_s)" \
            "$(json "$tmp/t2.json" bandwidth_fraction) $lpp $ltg $ltg1" |
            awk '{ print $0, ($6 > 0 ? $1 / $6 : 0), ($7 > 0 ? $2 / $7 : 0), ($8 > 0 ? $3 / $8 : 0) }' >> "$tmp/rounds"
    done
    m() { median "$tmp/rounds" "$1"; }
    awk -v n="$name" -v pp="$(m 1)" -v rpp="$ref_pp" -v tg="$(m 2)" -v rtg="$ref_tg" -v tg1="$(m 3)" -v nr="$(m 4)" \
        -v bwf="$(m 5)" 'BEGIN {
        printf "%-8s | %9.1f %9.1f %5.2fx | %9.1f %9.1f %5.2fx | %9.1f %9.1f | %7.1f%%\n", n, pp, rpp, pp / rpp, tg, rtg, tg / rtg, tg1, nr, 100 * bwf }'
    if [ -n "$LB" ]; then
        awk -v lpp="$(m 6)" -v rpp="$(m 9)" -v ltg="$(m 7)" -v rtg="$(m 10)" -v ltg1="$(m 8)" -v r1="$(m 11)" 'BEGIN {
            printf "%-8s | %9s %9.1f %5.2fx | %9s %9.1f %5.2fx | %9.1f %8.2fx |\n", "", "", lpp, rpp, "", ltg, rtg, ltg1, r1 }'
    fi
done
echo "(tok/s; issue = the issue's llama.cpp figures (Feb 2025, a Zen 5 with AVX-512); llama.cpp = LLAMA_BENCH on"
echo " these files and cores; --no-rpk = tg32 t2 with --no-repack; bw t2 = weight bytes per token x tg32 over"
echo " the machine's measured 2-thread read bandwidth; under --no-rpk: tg32 t1 over llama.cpp's)"
echo "(each figure the median of $ROUNDS round(s); a ratio is the median of the rounds' ratios, each round"
echo " running both engines back to back, since this kind of machine's speed drifts between minutes)"

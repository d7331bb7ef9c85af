#!/usr/bin/env bash
# Build the fuzz targets (make fuzz) and run each for SECONDS; exit nonzero
# when one finds a crash, a leak, a hang (>10 s per input) or a broken promise.
# Usage: fuzz/run.sh SECONDS [NAME...]   (NAME: gguf, tokenizer, ...; default all)
# Seeds: fuzz/seeds/<name>/ when present; for gguf, small files written by
# fuzz/gguf_seeds.c plus ../shared/models/stories260K.gguf when present (copied
# into build-fuzz/, never into the repository). Needs clang with libFuzzer
# (Debian's libclang-rt-14-dev).
set -eu
secs=${1:?usage: fuzz/run.sh SECONDS [NAME...]}
shift
cd "$(dirname "$0")/.."
names=("$@")
if [ ${#names[@]} -eq 0 ]; then
    for f in fuzz/fuzz_*.c; do n=$(basename "$f" .c); names+=("${n#fuzz_}"); done
fi
make -s fuzz
out=build-fuzz
status=0
for name in "${names[@]}"; do
    corpus=$out/corpus_$name seeds=$out/seeds_$name
    mkdir -p "$corpus" "$seeds"
    [ -d "fuzz/seeds/$name" ] && cp -r "fuzz/seeds/$name/." "$seeds/"
    if [ "$name" = gguf ]; then
        clang -std=c11 -g -O1 -D_GNU_SOURCE -Iinclude -Isrc -o "$out/gguf_seeds" fuzz/gguf_seeds.c \
            src/core/*.c src/quant/*.c src/gguf/*.c -lm -pthread
        "$out/gguf_seeds" "$seeds"
        shared=../shared/models/stories260K.gguf
        [ -f "$shared" ] && cp "$shared" "$seeds/"
    fi
    echo "== fuzz_$name for ${secs}s"
    # -max_len keeps mutations cheap; a large seed is cut to its head, which
    # for GGUF is the header: the part worth mutating.
    if ! "$out/fuzz_$name" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=32768 \
        -print_final_stats=1 -artifact_prefix="$out/crash-$name-" "$corpus" "$seeds"; then
        echo "fuzz_$name FAILED (artifacts in $out/crash-$name-*)"
        status=1
    fi
done
exit $status

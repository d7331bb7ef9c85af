#!/usr/bin/env bash
# Build the GGUF fuzz target and run it for SECONDS; exit nonzero when it
# finds a crash, a leak, a hang (>10 s per input) or a broken reader promise.
# Seeds: small files from fuzz/gguf_seeds.c, plus ../shared/models/stories260K.gguf
# when present (copied into build-fuzz/, never into the repository).
# The GGUF module depends only on core and quant (see src/core/core.h), so the
# target links just those: it builds even while other modules are mid-change.
# Usage: fuzz/run.sh SECONDS        (needs clang with libFuzzer: Debian's libclang-rt-14-dev)
set -eu
secs=${1:?usage: fuzz/run.sh SECONDS}
cd "$(dirname "$0")/.."
out=build-fuzz
mkdir -p "$out"
srcs=(src/core/*.c src/quant/*.c src/gguf/*.c)
flags=(-std=c11 -g -O1 -D_GNU_SOURCE -Iinclude -Isrc)
clang "${flags[@]}" -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -o "$out/fuzz_gguf" fuzz/fuzz_gguf.c "${srcs[@]}" -lm -pthread
clang "${flags[@]}" -o "$out/gguf_seeds" fuzz/gguf_seeds.c "${srcs[@]}" -lm -pthread

corpus=$out/corpus_gguf seeds=$out/seeds_gguf
mkdir -p "$corpus" "$seeds"
"$out/gguf_seeds" "$seeds"
shared=../shared/models/stories260K.gguf
[ -f "$shared" ] && cp "$shared" "$seeds/"

# -max_len keeps mutations cheap; the large seed is then cut to its header,
# which is the part worth mutating.
exec "$out/fuzz_gguf" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=32768 \
    -print_final_stats=1 -artifact_prefix="$out/crash-gguf-" "$corpus" "$seeds"

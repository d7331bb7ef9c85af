#!/usr/bin/env bash
# One pass on a GPU machine: build the CUDA backend, run tests/test_gpu (with
# the shared models found under $PL_SHARED, default build-gpu-data/) and
# bench_gpu (arguments passed through). Logs go to $OUT (else /tmp/pl-gpu).
set -u
O=${OUT:-/tmp/pl-gpu}
mkdir -p "$O"
export PATH=/usr/local/cuda/bin:$PATH
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.max.sm,clocks.mem --format=csv | tee "$O/smi.txt"
t0=$(date +%s)
if ! make -j"$(nproc)" GPU=cuda build-cuda/tests/test_gpu build-cuda/bench/bench_gpu >"$O/build.log" 2>&1; then
    grep -E "error|Error" "$O/build.log" | head -40
    exit 1
fi
echo "build: $(( $(date +%s) - t0 )) s"
PL_SHARED=${PL_SHARED:-build-gpu-data} PL_PPL_CHUNKS=${PL_PPL_CHUNKS:-16} build-cuda/tests/test_gpu 2>&1 | tee "$O/test_gpu.log"
build-cuda/bench/bench_gpu "$@" 2>&1 | tee "$O/bench.log"

#!/usr/bin/env bash
# One pass on a GPU machine: build the CUDA backend, run tests/test_gpu (with
# the shared models found under $PL_SHARED, default build-gpu-data/) and
# bench_gpu (arguments passed through). Logs go to $OUT (else /tmp/pl-gpu).
#   PL_GPU_AB=1       also bench the fusions one by one on the same file
#                     (PL_GPU_FUSE=0: the op sequence before them; each opt-in)
#   LLAMA_SRC=DIR     a llama.cpp source tree: its llama-bench is built with
#                     CUDA (sm_90, flash-attention kernels off to fit a short
#                     build) while ours builds and tests run, then run on the
#                     same file: the 1B written as F16 and quantized to Q4_0
#                     the way llama-quantize does (bench_gpu --reference Q4_0)
set -u
O=${OUT:-/tmp/pl-gpu}
mkdir -p "$O"
export PATH=/usr/local/cuda/bin:$PATH
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.max.sm,clocks.mem --format=csv | tee "$O/smi.txt"
llama_pid=
if [ -n "${LLAMA_SRC:-}" ]; then
    (cd "$LLAMA_SRC" && cmake -G Ninja -B build-pl -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 -DBUILD_SHARED_LIBS=OFF \
        -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF \
        -DLLAMA_BUILD_UI=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_CURL=OFF -DGGML_CUDA_NCCL=OFF -DGGML_NATIVE=OFF \
        -DGGML_CUDA_FA=OFF -DCMAKE_BUILD_TYPE=Release >"$O/llama_cmake.log" 2>&1 &&
        nice -n 5 ninja -C build-pl -j"$(nproc)" llama-bench >"$O/llama_build.log" 2>&1) &
    llama_pid=$!
fi
t0=$(date +%s)
if ! make -j"$(nproc)" GPU=cuda build-cuda/tests/test_gpu build-cuda/bench/bench_gpu >"$O/build.log" 2>&1; then
    grep -E "error|Error" "$O/build.log" | head -40
    exit 1
fi
echo "build: $(( $(date +%s) - t0 )) s"
PL_SHARED=${PL_SHARED:-build-gpu-data} PL_PPL_CHUNKS=${PL_PPL_CHUNKS:-16} build-cuda/tests/test_gpu 2>&1 | tee "$O/test_gpu.log"
F=${PL_BENCH_FILE:-/tmp/pl-bench-gpu-1b.gguf}
if [ -n "$llama_pid" ]; then
    build-cuda/bench/bench_gpu --reference Q4_0 --out "$F" "$@" 2>&1 | tee "$O/bench.log"
    wait "$llama_pid"
    lb=$LLAMA_SRC/build-pl/bin/llama-bench
    if [ -x "$lb" ]; then
        "$lb" -m "$F" -ngl 99 -p 512 -n 128 2>&1 | tee "$O/llama_bench.log"
        build-cuda/bench/bench_gpu --model "$F" "$@" 2>&1 | tee "$O/bench_after_llama.log"
    else
        echo "llama-bench did not build: $O/llama_build.log"; tail -5 "$O/llama_build.log"
    fi
else
    build-cuda/bench/bench_gpu --out "$F" "$@" 2>&1 | tee "$O/bench.log"
fi
if [ "${PL_GPU_AB:-0}" = 1 ]; then
    for v in PL_GPU_FUSE=0 PL_GPU_FUSE_GLU=1 PL_GPU_FUSE_ATTN=1 PL_GPU_STAGE_BLOCKS=1100 \
        "PL_GPU_FUSE_GLU=1 PL_GPU_FUSE_ATTN=1"; do
        echo "$v: $(env $v build-cuda/bench/bench_gpu --model "$F" --reps 3 2>&1 | grep 'CUDA graph')"
    done | tee "$O/ab.log"
fi

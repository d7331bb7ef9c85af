# pocketllm — plain C11 + pthreads + libm.
#   make          library, CLI (build/pocketllm), tests
#   make run      build, then generate text from the default model
#   make test     build and run every test (ends with "N passed, N failed")
#   make asan     the same tests under AddressSanitizer + UBSan (build-asan/)
#   make fuzz     build the fuzz targets with clang's libFuzzer (build-fuzz/)
#   make bench    benchmarks (figures, never asserted)
# WERROR=1 turns warnings into errors (CI does this).

CC      ?= cc
ifeq ($(GPU),cuda)
B       ?= build-cuda
endif
B       ?= build
OPT     ?= -O2
CFLAGS_BASE = -std=c11 -g $(OPT) -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
          -D_GNU_SOURCE -Iinclude -pthread
ifeq ($(WERROR),1)
CFLAGS_BASE += -Werror
endif
CFLAGS  += $(CFLAGS_BASE) $(EXTRA_CFLAGS)
LDLIBS  += -lm -pthread
LDFLAGS += $(EXTRA_LDFLAGS)

LIB_SRC   := $(sort $(wildcard src/*/*.c))
TOOL_SRC  := $(sort $(wildcard tools/*.c))
TEST_SRC  := $(sort $(wildcard tests/test_*.c))
BENCH_SRC := $(sort $(wildcard bench/*.c))

# GPU=cuda adds the CUDA backend: src/gpu/*.cu compiled by nvcc for CUDA_ARCH
# (Hopper by default) into the library, linked with the static CUDA runtime,
# all in build-cuda/. Without it src/gpu/gpu_none.c stands in: no CUDA needed.
NVCC      ?= nvcc
CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(shell command -v $(NVCC) 2>/dev/null))
CUDA_ARCH ?= -gencode=arch=compute_90,code=sm_90
ifeq ($(GPU),cuda)
LIB_SRC := $(filter-out src/gpu/gpu_none.c,$(LIB_SRC))
CU_SRC  := $(sort $(wildcard src/gpu/*.cu))
LDLIBS  += -L$(CUDA_HOME)/lib64 -lcudart_static -ldl -lrt -lstdc++
endif

LIB_OBJ   := $(LIB_SRC:%.c=$(B)/obj/%.o) $(CU_SRC:%.cu=$(B)/obj/%.o)
TOOL_OBJ  := $(TOOL_SRC:%.c=$(B)/obj/%.o)
TEST_BIN  := $(TEST_SRC:tests/%.c=$(B)/tests/%)
BENCH_BIN := $(BENCH_SRC:bench/%.c=$(B)/bench/%)
LIB       := $(B)/libpocketllm.a
CLI       := $(B)/pocketllm

# Per-ISA kernel files get their instruction-set flags; the rest of the binary
# stays baseline x86-64 so it runs anywhere and dispatches at run time.
ISA_FLAGS_x86_avx2    = -mavx2 -mfma -mf16c
ISA_FLAGS_x86_avx512  = -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512vnni -mfma -mf16c
# Keyed on the compiler's target, not the build machine, so a cross build
# (make test-arm64) gets the right files' flags.
TARGET_MACHINE := $(shell $(CC) -dumpmachine 2>/dev/null)
ifneq ($(filter x86_64-% i386-% i486-% i586-% i686-%,$(TARGET_MACHINE)),)
$(B)/obj/src/kernels/x86_avx2.o:   CFLAGS += $(ISA_FLAGS_x86_avx2)
$(B)/obj/src/kernels/x86_avx512.o: CFLAGS += $(ISA_FLAGS_x86_avx512)
$(B)/obj/src/kernels/x86_avx512_gemm.o: CFLAGS += $(ISA_FLAGS_x86_avx512)
$(B)/obj/src/kernels/x86_avx512_bf16.o: CFLAGS += $(ISA_FLAGS_x86_avx512) -mavx512bf16
endif
# aarch64: NEON is baseline armv8-a (arm_neon*.c need no flag); only the SDOT
# and SMMLA files are built for armv8.2-a+dotprod(+i8mm), and run only where
# hwcaps report those.
ISA_FLAGS_arm_dotprod = -march=armv8.2-a+dotprod
ISA_FLAGS_arm_i8mm    = -march=armv8.2-a+dotprod+i8mm
ifneq ($(filter aarch64-% arm64-%,$(TARGET_MACHINE)),)
$(B)/obj/src/kernels/arm_dotprod.o: CFLAGS += $(ISA_FLAGS_arm_dotprod)
$(B)/obj/src/kernels/arm_i8mm.o:    CFLAGS += $(ISA_FLAGS_arm_i8mm)
# Debian 12's aarch64 gcc 12.2 crashes vectorising fmax reductions that
# several tests use (ICE in vect_transform_reduction); tests need no vectors.
$(B)/tests/%: private CFLAGS += -fno-tree-vectorize
endif

# The project's own model (models/pocket-kjv.gguf, trained by `pocketllm train`;
# README "Default model" says how), so `make run` needs nothing else.
DEFAULT_MODEL ?= models/pocket-kjv.gguf

.PHONY: all run test asan fuzz bench clean test-arm64
all: $(LIB) $(CLI) $(TEST_BIN) $(BENCH_BIN)

$(B)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(B)/obj/%.o: %.cu $(wildcard src/gpu/*.cuh src/gpu/*.h)
	@mkdir -p $(dir $@)
	$(NVCC) -std=c++17 -O3 $(CUDA_ARCH) -Iinclude -Xcompiler -Wall,-Wextra -c $< -o $@

$(LIB): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

# The chat store and HTTP server (tools/serve/) and the chat page embedded from
# tools/web/ by a generated C file: linked into the CLI and test_chat only, so
# libpocketllm.a itself needs no system libraries beyond libm and pthreads.
SERVE_SRC    := $(sort $(wildcard tools/serve/*.c))
SERVE_OBJ    := $(SERVE_SRC:%.c=$(B)/obj/%.o) $(B)/obj/gen/web_assets.o
SERVE_LDLIBS := -lsqlite3 -lmicrohttpd -ljansson
WEB_FILES    := $(sort $(wildcard tools/web/*.html tools/web/*.js tools/web/*.css))
$(B)/gen/web_assets.c: tools/web/embed.sh $(WEB_FILES)
	@mkdir -p $(dir $@)
	sh tools/web/embed.sh $@ $(WEB_FILES)
$(B)/obj/gen/web_assets.o: $(B)/gen/web_assets.c tools/serve/serve.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itools -c $< -o $@
$(B)/tests/test_chat: tests/test_chat.c $(SERVE_OBJ) $(LIB) tests/test.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Isrc -Itools $(LDFLAGS) -o $@ $< $(SERVE_OBJ) $(LIB) $(LDLIBS) $(SERVE_LDLIBS)

$(CLI): $(TOOL_OBJ) $(SERVE_OBJ) $(LIB)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(TOOL_OBJ) $(SERVE_OBJ) $(LIB) $(LDLIBS) $(SERVE_LDLIBS)

$(B)/tests/%: tests/%.c $(LIB) tests/test.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Isrc $(LDFLAGS) -o $@ $< $(LIB) $(LDLIBS)

$(B)/bench/%: bench/%.c $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Isrc $(LDFLAGS) -o $@ $< $(LIB) $(LDLIBS)

run: $(CLI)
	@if [ -f "$(DEFAULT_MODEL)" ]; then \
	  $(CLI) run -m $(DEFAULT_MODEL) -p "In the beginning God created" -n 64 --seed 1; \
	else \
	  echo "default model $(DEFAULT_MODEL) not found: run 'build/pocketllm run -m FILE.gguf -p \"...\"' with a GGUF model"; exit 1; \
	fi

test: all
	tests/run.sh $(B)

asan:
	$(MAKE) B=build-asan OPT=-O1 EXTRA_CFLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
	  EXTRA_LDFLAGS="-fsanitize=address,undefined" all
	PL_ASAN=1 PL_PPL_CHUNKS=2 tests/run.sh build-asan

# Fuzz targets: the library is rebuilt with clang and sanitizer coverage into
# build-fuzz/ (through the normal rules, so per-ISA kernel flags still apply),
# then each fuzz/fuzz_<name>.c links against it with libFuzzer's main.
# fuzz/run.sh SECONDS [NAME...] builds and runs them.
FUZZ_SRC   := $(sort $(wildcard fuzz/fuzz_*.c))
FUZZ_BIN   := $(FUZZ_SRC:fuzz/%.c=build-fuzz/%)
FUZZ_FLAGS := -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_EXTRA_fuzz_http_json := -Itools tools/serve/request.c -ljansson
.PHONY: fuzz-lib
fuzz: $(FUZZ_BIN)
fuzz-lib:
	$(MAKE) B=build-fuzz CC=clang OPT=-O1 EXTRA_CFLAGS="$(FUZZ_FLAGS) -fsanitize=fuzzer-no-link" build-fuzz/libpocketllm.a
build-fuzz/fuzz_%: fuzz/fuzz_%.c fuzz-lib
	clang -std=c11 -g -O1 -D_GNU_SOURCE -Iinclude -Isrc $(FUZZ_FLAGS) -fsanitize=fuzzer -o $@ $< \
	  $(FUZZ_EXTRA_fuzz_$*) build-fuzz/libpocketllm.a -lm -pthread

# aarch64 cross build into build-arm64/ (static, so qemu-user needs no
# sysroot), run under qemu: the kernel test once per CPU model in ARM64_CPUS
# (model:level it must be detected as; `max` has NEON, dotprod and i8mm,
# cortex-a76 dotprod without i8mm, cortex-a53 NEON only, so every level and
# variant is tested and detection with it), then the quick portable tests
# once, on the first model.
# Needs gcc-aarch64-linux-gnu and qemu-user.
ARM64_CC    ?= aarch64-linux-gnu-gcc
ARM64_QEMU  ?= qemu-aarch64
ARM64_CPUS  ?= max:dotprod cortex-a76:dotprod cortex-a53:neon
ARM64_TESTS ?= test_kernels
ARM64_TESTS_ONCE ?= test_quant test_train_ops test_gguf test_tokenizer test_sample
test-arm64:
	$(MAKE) B=build-arm64 CC=$(ARM64_CC) EXTRA_LDFLAGS=-static $(patsubst %,build-arm64/tests/%,$(ARM64_TESTS) $(ARM64_TESTS_ONCE))
	@fail=0; first=1; for m in $(ARM64_CPUS); do cpu=$${m%%:*}; \
	  tests="$(ARM64_TESTS)"; [ $$first = 1 ] && tests="$$tests $(ARM64_TESTS_ONCE)"; first=0; \
	  for t in $$tests; do \
	    echo "== $$t (qemu-aarch64 -cpu $$cpu)"; \
	    out=$$(PL_EXPECT_CPU_LEVEL=$${m#*:} $(ARM64_QEMU) -cpu $$cpu build-arm64/tests/$$t 2>&1) || fail=1; \
	    printf '%s\n' "$$out" | grep -E '^(ok|FAIL|skip) |^  (check failed|skipped)|^[0-9]+ passed' | head -n 60; \
	done; done; [ $$fail = 0 ] && echo "test-arm64: all passed" || echo "test-arm64: FAILED"; exit $$fail

bench: all
	@for b in $(BENCH_BIN); do echo "== $$b"; $$b || exit 1; done
	bench/run_cpu.sh $(B)

clean:
	rm -rf build build-asan build-fuzz build-arm64

-include $(LIB_OBJ:.o=.d) $(TOOL_OBJ:.o=.d) $(SERVE_OBJ:.o=.d)

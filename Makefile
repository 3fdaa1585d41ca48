# tokenformer: one binary, CPU (OpenBLAS + OpenMP) and, when nvcc is found, CUDA.
#   make            build ./tokenformer (CUDA=0 forces a CPU-only build)
#   make test       build and run the test suite (what CI runs)
#   make asan       AddressSanitizer + UBSan build, then the test suite on it
#   make test-cuda  CUDA tests (prints SKIP without a GPU)
#   make deps       install missing Debian packages
#   make data       fetch data/input.txt (tiny shakespeare; CORPUS=linux-docs|kjv|enwik8 for others)

CC      ?= gcc
NVCC    ?= $(shell command -v nvcc 2>/dev/null || ls /usr/local/cuda/bin/nvcc 2>/dev/null)
CUDA    ?= $(if $(NVCC),1,0)
OPT     ?= -O3 -march=native
# No code here reads floating-point exception flags or a math call's errno, and
# with either on, GCC leaves loops scalar: -fno-trapping-math lets it if-convert
# a clamp whose arms fold to constants (the fast exp/erf loops of
# src/backends/cpu/fastmath.h without AVX-512), -fno-math-errno lets sqrtf be
# one instruction (AdamW, the norms). Neither changes a computed value.
CFLAGS  += -std=c11 -Wall -Wextra -Wno-unused-parameter $(OPT) -fno-trapping-math -fno-math-errno \
           -fopenmp -Iinclude -I/usr/include/cjson
LDLIBS  += -lopenblas -lcjson -lm -fopenmp

# Objects of a CPU-only and a CUDA build never mix: each has its own folder.
BUILD   ?= build/$(if $(filter 1,$(CUDA)),cuda,cpu)

# The layers: core (tensors, config, rng), io (text, safetensors, checkpoints),
# model (the model, growth, sampling), backends (cpu/, cuda/ and the choice
# between them), commands (the CLI, one file a command).
SRC_C   := $(wildcard src/core/*.c src/io/*.c src/model/*.c src/backends/*.c src/backends/cpu/*.c src/commands/*.c)
OBJ     := $(SRC_C:%.c=$(BUILD)/%.o)

ifeq ($(CUDA),1)
CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(NVCC))
CUDA_ARCH ?= -gencode=arch=compute_90,code=sm_90 -gencode=arch=compute_80,code=sm_80
# Every CUDA call of the program goes to the per-thread default stream (0
# means that stream here): unlike the legacy one, it can be recorded into a
# CUDA graph (the decode step, ops.h record_begin).
NVFLAGS   += -O3 -std=c++17 $(CUDA_ARCH) -Iinclude -Xcompiler -Wall,-Wextra,-Wno-unused-parameter \
             --default-stream per-thread
SRC_CU    := $(wildcard src/backends/cuda/*.cu)
OBJ       += $(SRC_CU:%.cu=$(BUILD)/%.o) $(patsubst %.c,$(BUILD)/%.o,$(wildcard src/backends/cuda/*.c))
CFLAGS    += -DTF_CUDA -I$(CUDA_HOME)/include -DCUDA_API_PER_THREAD_DEFAULT_STREAM=1
# The CUDA runtime is linked statically (it opens the driver on the first CUDA
# call); cuBLAS, cuBLASLt and NCCL are opened by src/backends/cuda/cuda_libs.c on first
# use, found through the run paths below. Nothing CUDA is mapped at start.
CUDA_RPATH := $(CUDA_HOME)/lib64 $(if $(wildcard $(CUDA_HOME)/lib/libnccl.so*),$(CUDA_HOME)/lib)
LDLIBS    += -L$(CUDA_HOME)/lib64 -L$(CUDA_HOME)/targets/x86_64-linux/lib -lcudart_static -ldl -lrt -lpthread -lstdc++ \
             $(foreach d,$(CUDA_RPATH),-Wl,-rpath,$(d))
endif

.PHONY: all test test-cuda asan deps data clean bench fuzz
all: tokenformer

tokenformer: $(OBJ)
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c -o $@ $<

$(BUILD)/%.o: %.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(NVFLAGS) -MMD -MP -c -o $@ $<

# Test programs link every object but main.
LIB_OBJ := $(filter-out $(BUILD)/src/commands/main.o,$(OBJ))
TEST_SRC := $(wildcard tests/test_*.c)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
# Tests are white-box: they may reach a backend's private headers.
TEST_CFLAGS := -Isrc/backends/cpu -Isrc/backends/cuda

$(BUILD)/tests/%: tests/%.c $(LIB_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(TEST_CFLAGS) -o $@ $< $(LIB_OBJ) $(LDLIBS)

# The op tests (test_ops: gradients on the CPU; test_cuda_ops: CUDA against
# the CPU) run one case table: tests/op_cases.h.
OP_TEST_OBJ := $(patsubst %,$(BUILD)/tests/%.o,op_harness op_cases op_custom)
OP_TEST_BIN := $(BUILD)/tests/test_ops $(BUILD)/tests/test_cuda_ops
$(OP_TEST_OBJ): CFLAGS += $(TEST_CFLAGS)
$(OP_TEST_BIN): $(BUILD)/tests/%: tests/%.c $(OP_TEST_OBJ) $(LIB_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(TEST_CFLAGS) -o $@ $< $(OP_TEST_OBJ) $(LIB_OBJ) $(LDLIBS)

# T="name ..." runs just those tests (e.g. make test T="test_tokenizer test_resume").
test: tokenformer $(TEST_BIN)
	@BUILD=$(BUILD) ./tests/run_tests.sh $(T)

test-cuda: tokenformer $(TEST_BIN)
	@BUILD=$(BUILD) ./tests/run_cuda_tests.sh

asan:
	$(MAKE) BUILD=build-asan CUDA=0 OPT="-O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined" \
	    LDLIBS="-lopenblas -lcjson -lm -fopenmp -fsanitize=address,undefined" tokenformer-asan
	ASAN_OPTIONS=detect_leaks=1 TF_BIN=./tokenformer-asan $(MAKE) BUILD=build-asan CUDA=0 \
	    OPT="-O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined" \
	    LDLIBS="-lopenblas -lcjson -lm -fopenmp -fsanitize=address,undefined" test-asan-run

tokenformer-asan: $(OBJ)
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

test-asan-run: $(TEST_BIN)
	@BUILD=$(BUILD) TF_BIN=./tokenformer-asan ./tests/run_tests.sh

deps:
	@./scripts/deps.sh

# CORPUS: shakespeare (default, data/input.txt), linux-docs (data/linux-docs.txt),
# kjv (data/kjv.txt) or enwik8 (data/enwik8); see scripts/get_data.sh.
CORPUS ?= shakespeare
data:
	@./scripts/get_data.sh $(CORPUS)

-include $(OBJ:.o=.d) $(OP_TEST_OBJ:.o=.d)

clean:
	rm -rf build build-asan build-dev tokenformer tokenformer-asan

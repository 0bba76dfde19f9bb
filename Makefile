# Quick start (docs/user-guide.md):
#   make demo   build, then run VSE++ end to end on generated data
#   make test   build twice (release, ASan+UBSan) and run the whole suite in both,
#               then a few seconds of each fuzz target (clang; make fuzz for longer)
#   make bench  build, then time itrc against PyTorch / ONNX Runtime (bench/run.sh)
# All three install missing Debian packages first when run as root.

BUILD      ?= build
ASAN_BUILD ?= build-asan
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_ARGS ?=

.PHONY: all deps build build-asan test test-release test-asan test-fuzz fuzz demo bench clean

all: build

deps:
	@tools/install-deps.sh

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_ARGS) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

build-asan: deps
	@cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DITR_SANITIZE=ON $(CMAKE_ARGS) >/dev/null
	@cmake --build $(ASAN_BUILD) -j $(JOBS)

test-release: build
	@echo "== tests (release build)"
	@cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

test-asan: build-asan
	@echo "== tests (AddressSanitizer + UndefinedBehaviorSanitizer build)"
	@cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		ctest --output-on-failure -j $(JOBS)

# Fuzzing (tests/fuzz/, docs/contributing.md "Fuzzing"): a clang build in
# $(FUZZ_BUILD); `make test` runs each target for a few seconds on its seeds
# (skipped, with the reason, without clang/libFuzzer), `make fuzz` for
# FUZZ_TIME seconds each (FUZZ_TARGET="plan ir" for some only).
FUZZ_BUILD ?= build-fuzz
FUZZ_TIME  ?= 60
test-fuzz:
	@FUZZ_TIME=5 FUZZ_TARGET= FUZZ_JOBS=$(JOBS) bash tests/fuzz/run.sh --smoke $(FUZZ_BUILD)

fuzz: deps
	@FUZZ_TIME=$(FUZZ_TIME) FUZZ_TARGET="$(FUZZ_TARGET)" FUZZ_JOBS=$(JOBS) bash tests/fuzz/run.sh $(FUZZ_BUILD)

test: test-release test-asan test-fuzz

demo: build
	@bash tools/demo.sh $(BUILD)

# Benchmarks (docs/performance.md): itrc against PyTorch and ONNX Runtime;
# bench/setup-peers.sh installs the peers into bench/.venv once.
bench: build
	@BENCH_NO_BUILD=1 bash bench/run.sh $(BUILD)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)

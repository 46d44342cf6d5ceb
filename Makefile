# Thin wrapper over CMake presets. The two set-up commands of README.md:
#   make demo    install dependencies, build, run the demo
#   make check   install dependencies, build, run the whole test suite
PRESET ?= debug
BUILD  := build/$(PRESET)

.PHONY: all deps build check demo asan release bench bench-scheduler bench-vm clean format

all: build

deps:
	@scripts/install-deps.sh

# Dependencies first: configuring needs the -dev packages.
$(BUILD)/build.ninja: | deps
	cmake --preset $(PRESET)

build: deps $(BUILD)/build.ninja
	cmake --build $(BUILD)

check: build
	ctest --test-dir $(BUILD) --output-on-failure --timeout 600 $(CTEST_ARGS)

demo: build
	scripts/demo.sh $(BUILD)

asan:
	$(MAKE) check PRESET=asan

release:
	$(MAKE) build PRESET=release

# Benchmarks run from the release build and print their tables.
bench:
	$(MAKE) build PRESET=release
	build/release/bench/bench_scheduler --fabctld build/release/controller/fabctld \
		--fabctl build/release/controller/fabctl
	build/release/bench/bench_partition --images build/release/guest
	build/release/bench/bench_vmbus --images build/release/guest
	build/release/bench/bench_remote --images build/release/guest \
		--fabnode build/release/node-hv/fabnode --fabctl build/release/controller/fabctl \
		--floor build/release/bench/remote_floor --baseline scripts/bench-remote-baseline.sh

# Remote VMBus over RDMA between two soft-RoCE VMs, against the verbs floors.
# The controller alone: 1,000 simulated nodes, 10,000 partitions.
bench-scheduler:
	$(MAKE) build PRESET=release
	build/release/bench/bench_scheduler --fabctld build/release/controller/fabctld \
		--fabctl build/release/controller/fabctl

bench-vm:
	$(MAKE) build PRESET=release
	bench/remote_vm.sh --transport rdma build/release

format:
	git ls-files '*.c' '*.h' | xargs clang-format -i

clean:
	rm -rf build

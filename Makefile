# mtapi developer entry points.
#
#   make deps          install the Debian packages (scripts/bootstrap)
#   make build         configure (CMake preset) and build; PRESET=debug|asan|tsan
#   make run           build, start dev PostgreSQL/Redis, migrate, serve
#   make test          build, start test PostgreSQL/Redis, run ctest, stop them
#   make bench-health  HTTP load test of /health (bench/health.sh)
#   make bench         all benchmarks (bench/run.sh)
#   make format        clang-format the C++ sources
#   make lint          clang-tidy over src/ (uses compile_commands.json)
#   make clean         remove build/
#   make distclean     stop local services, delete their data, build/ and .var/
#
# Variables: PRESET (default release), CTEST_ARGS (extra ctest arguments,
# e.g. CTEST_ARGS='-R unit'), KEEP_SERVICES=1 (make test leaves the test
# services running).

SHELL := /bin/bash
.DEFAULT_GOAL := build

PRESET     ?= release
CTEST_ARGS ?=
KEEP_SERVICES ?=

BUILD_DIR := build/$(PRESET)
MTAPI     := $(BUILD_DIR)/mtapi

.PHONY: deps build run test bench-health bench format lint clean distclean help

help:
	@awk '/^#/ { sub(/^# ?/, ""); print; next } { exit }' Makefile

deps:
	@scripts/bootstrap

# Configure once per preset; afterwards ninja re-runs CMake by itself when a
# CMakeLists.txt changes. A change to CMakePresets.json reconfigures here.
$(BUILD_DIR)/build.ninja: CMakePresets.json | deps
	cmake --preset $(PRESET)
	@touch $@

build: deps $(BUILD_DIR)/build.ninja
	cmake --build --preset $(PRESET)

run: build
	@scripts/services up
	@set -a; . .var/dev.env; set +a; \
	$(MTAPI) migrate || exit $$?; \
	scripts/demo $(MTAPI) || exit $$?; \
	echo "mtapi: serving on http://$${MTAPI_LISTEN:-127.0.0.1:8000}"; \
	exec $(MTAPI) serve

# The test services are stopped whatever happens (failure, Ctrl-C), unless
# KEEP_SERVICES=1; the recipe exits with ctest's status.
test: build
	@if [[ "$(KEEP_SERVICES)" != 1 ]]; then trap 'scripts/services down --test' EXIT; fi; \
	trap 'exit 130' INT; trap 'exit 143' TERM; \
	scripts/services up --test || exit $$?; \
	set -a; . .var/test.env; set +a; \
	ctest --test-dir $(BUILD_DIR) --output-on-failure --no-tests=error -j2 $(CTEST_ARGS); \
	st=$$?; exit $$st

bench-health: build
	bench/health.sh

bench: build
	@if [[ -x bench/run.sh ]]; then bench/run.sh; \
	else echo "bench: bench/run.sh not present"; fi

CXX_SOURCES = $(shell find src tests bench -type f \( -name '*.cpp' -o -name '*.hpp' \) 2>/dev/null | sort)

format:
	@if [[ -n "$(strip $(CXX_SOURCES))" ]]; then clang-format -i $(CXX_SOURCES); fi
	@echo "format: $(words $(CXX_SOURCES)) files"

lint: deps
	@[[ -f build/release/compile_commands.json ]] || cmake --preset release
	run-clang-tidy -quiet -p build/release '$(CURDIR)/src/.*\.cpp$$'

clean:
	rm -rf build

# purge also deletes PostgreSQL data kept outside the repository (see
# scripts/services).
distclean:
	@scripts/services purge
	@scripts/services purge --test
	rm -rf build .var

# Tenancy benchmarks against the dev PostgreSQL: provisioning latency and
# migrating 1,000 tenants (bench/tenancy.sh; see bench/README.md).
.PHONY: bench-tenancy
bench-tenancy: build
	bench/tenancy.sh

# Fleet API load test against the dev PostgreSQL: GET/list/POST
# /api/v1/vehicles over 8 tenants (wrk), next to pgbench running the same
# tenant transactions (bench/fleet.sh; see bench/README.md).
.PHONY: bench-fleet
bench-fleet: build
	bench/fleet.sh

# What the rate limiter costs: GET /api/v1/vehicles/{id} with the limiter off,
# on Redis and in process, alternating in one run (bench/ratelimit.sh).
.PHONY: bench-ratelimit
bench-ratelimit: build
	bench/ratelimit.sh

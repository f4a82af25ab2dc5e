# Tapio: the two commands a new machine needs are `make run` and `make test`.
# Everything else here is what those two are made of.

SHELL := /bin/bash
CARGO ?= cargo
# Debian 12 packages the build and the tests need. bpftool reads the
# objects' BTF in a test; dnsmasq and dig are the DNS tests' server and
# client; libbpf-tools and bpftrace are the benchmarks' baselines;
# prometheus scrapes Tapio's /metrics in its test; procps's pkill ends the
# kernel matrix when `make test` is interrupted.
APT_PACKAGES := etcd-server etcd-client clang-19 llvm-19 libclang-19-dev libbpf-dev linux-libc-dev bpftool libbpf-tools python3-pip iputils-ping \
	dnsmasq-base bind9-dnsutils iproute2 bpftrace qemu-system-x86 busybox-static cpio \
	redis-server postgresql openssl nftables iperf3 netsniff-ng xz-utils kmod prometheus procps
TAPIO := $(or $(CARGO_TARGET_DIR),target)/release/tapio
# The host's test output, for the host column of the kernel matrix.
HOST_TESTS := $(or $(CARGO_TARGET_DIR),target)/host-tests.log

# libFuzzer targets (fuzz/, nightly): the CI pass replays each corpus and
# fuzzes FUZZ_SECONDS more per target; cargo-fuzz is built once into a
# directory outside the clone.
FUZZ_TARGETS := dns_message ring_records opamp_server_to_agent config_yaml metrics_request
FUZZ_SECONDS ?= 5
# CI's pass builds unoptimised without a sanitizer: a fresh clone rebuilds
# the agent crate for it every time, and an ASan -O build of it (and a cold
# one of every dependency) costs minutes more. Safe Rust gains little from
# ASan; the debug build adds overflow checks and debug assertions as
# oracles. Long runs: FUZZ_BUILD=-O (README "Fuzzing").
FUZZ_BUILD ?= --dev -s none
CARGO_FUZZ_VERSION := 0.13.2
FUZZ_BIN := $(HOME)/.cache/tapio/bin
FUZZ_ENV := PATH=$(FUZZ_BIN):$$PATH

.PHONY: run test matrix setup deps mounts build fmt clippy fuzz fuzz-tools bench vmlinux

## run: install what is missing, build, and run Tapio (OTLP-JSON on stdout
## unless a config or OTEL_EXPORTER_OTLP_ENDPOINT says otherwise).
run: setup build
	$(TAPIO) run $(if $(CONFIG),--config $(CONFIG))

## test: install what is missing, then lint and run every test, the
## privileged ones for real (they fail under CI=true without root).
test: setup fmt clippy
	@# Every test binary first: the kernel matrix runs them in its guests.
	$(CARGO) test --workspace --release --no-run
	@# The host's tests, the dispatcher pass, the fuzz pass, and the kernel
	@# matrix beside them (integration/run-tests.sh says why).
	CARGO='$(CARGO)' TAPIO='$(TAPIO)' HOST_TESTS='$(HOST_TESTS)' bash integration/run-tests.sh

## matrix: only the kernel matrix (Debian 6.1 and 6.12 guests under qemu:
## the smoke boot and the privileged test binaries in each), rewriting the
## README's table from this run (the host column from the last `make test`).
matrix: setup build
	$(CARGO) test --release -p tapio --no-run
	TAPIO=$(TAPIO) HOST_TESTS=$(HOST_TESTS) WRITE_README=1 bash integration/vm/run.sh

setup: deps mounts

deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi
	@python3 -c 'import rotel' 2>/dev/null || python3 -m pip install -q --disable-pip-version-check rotel
	@python3 -c 'import grpc' 2>/dev/null || python3 -m pip install -q --disable-pip-version-check grpcio
	@# The semantic-conventions registry the names table is checked against.
	@python3 -c 'import opentelemetry.semconv.attributes' 2>/dev/null || python3 -m pip install -q --disable-pip-version-check opentelemetry-semantic-conventions
	@# The OpAMP test server decodes with the protoc-generated opamp_pb2 this ships.
	@python3 -c 'import opentelemetry._opamp.proto.opamp_pb2' 2>/dev/null || python3 -m pip install -q --disable-pip-version-check opentelemetry-opamp-client

# Tapio mounts these itself at start; the tests' own tools (bpftool) want
# them too.
mounts:
	@mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf || true
	@mountpoint -q /sys/kernel/tracing || mount -t tracefs tracefs /sys/kernel/tracing || true

build:
	$(CARGO) build --release

fmt:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets --release -- -D warnings

## fuzz: a short bounded pass of every fuzz target (its committed corpus,
## then FUZZ_SECONDS of new inputs); fails on a crash, a leak or a hang.
## Long runs: README "Tests".
fuzz: fuzz-tools
	cd fuzz && $(FUZZ_ENV) cargo +nightly fuzz build $(FUZZ_BUILD)
	@set -e; for t in $(FUZZ_TARGETS); do \
		work=$$(mktemp -d); mkdir $$work/corpus; \
		echo "fuzz: $$t: $$(ls fuzz/corpus/$$t | wc -l) corpus inputs, then $(FUZZ_SECONDS) s"; \
		if (cd fuzz && $(FUZZ_ENV) cargo +nightly fuzz run $(FUZZ_BUILD) $$t $$work/corpus corpus/$$t -- \
			-max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=2048 -print_final_stats=1) >$$work/log 2>&1; then \
			grep -E '^stat::number_of_executed_units' $$work/log; rm -rf $$work; \
		else \
			tail -n 60 $$work/log; rm -rf $$work; echo "fuzz: $$t FAILED (input in fuzz/artifacts/$$t)"; exit 1; \
		fi; \
	done

# The nightly toolchain (cargo fuzz needs it; rust-src is not needed with
# the default ASan build) and cargo-fuzz at a pinned version.
fuzz-tools:
	@rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
	@[ -x $(FUZZ_BIN)/cargo-fuzz ] && $(FUZZ_BIN)/cargo-fuzz --version | grep -q ' $(CARGO_FUZZ_VERSION)$$' || \
		$(CARGO) install cargo-fuzz --version $(CARGO_FUZZ_VERSION) --locked --root $(HOME)/.cache/tapio

## bench: exec-heavy workload alone, with Tapio, and with execsnoop; export
## path CPU per record. Prints figures; asserts nothing.
bench: setup build
	bash bench/exec_overhead.sh
	bash bench/connect_overhead.sh
	bash bench/dns_overhead.sh
	bash bench/security_overhead.sh
	$(CARGO) bench -p tapio --features legacy-mapper --bench export_path

## vmlinux: regenerate ebpf/include/vmlinux.h from this kernel's BTF.
vmlinux:
	bpftool btf dump file /sys/kernel/btf/vmlinux format c > ebpf/include/vmlinux.h

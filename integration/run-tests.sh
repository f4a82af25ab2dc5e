#!/usr/bin/env bash
# The test part of `make test` (after fmt, clippy and the build of every
# test binary): the host's tests, the security tests on the syscall
# dispatcher, the fuzz pass, and the kernel matrix (integration/vm/run.sh).
#
# The matrix starts first and runs beside the rest, at low priority. Its two
# guests are CPU-bound (qemu's software emulation, one host thread each: two
# cores for ~16 minutes), while the host's tests mostly wait (on servers,
# timeouts, export intervals: ~6 minutes of wall clock, little CPU). Run one
# after the other, CI took ~28 minutes; side by side the host's part costs
# the guests only the CPU it uses. `nice` keeps the host's tests as fast as
# alone: whenever one of them is runnable it gets the core.
#
# Environment: CARGO, TAPIO, HOST_TESTS (the host's test log). The
# matrix waits for HOST_DONE before it reads that log and loads BPF on the
# host itself (`tapio probes`), which the host's tests would observe.
set -uo pipefail
# CARGO may be a command with arguments (`cargo +stable`).
read -ra cargo <<<"${CARGO:-cargo}"
: "${TAPIO:?}" "${HOST_TESTS:?}"
cd "$(dirname "$0")/.."

matrix_log=$(mktemp)
host_done=$(mktemp -u)
trap 'rm -f "$matrix_log" "$host_done"' EXIT
# Its cargo call (the test binaries' paths) is a no-op after the build, and
# cargo holds no lock while tests run. A matrix that fails says so at the
# end, with its log: the host's tests run either way.
# A session of its own (setsid does not fork: a background job is no group
# leader), so an interrupt can end it whole, qemu under `timeout` included.
TAPIO=$TAPIO HOST_TESTS=$HOST_TESTS HOST_DONE=$host_done \
	setsid nice -n 10 bash integration/vm/run.sh >"$matrix_log" 2>&1 &
matrix=$!
trap 'pkill -TERM -s "$matrix" 2>/dev/null; exit 130' INT TERM

status=0
"${cargo[@]}" test --workspace --release 2>&1 | tee "$HOST_TESTS" || status=1
# The security probe's other syscall path (the default is per-syscall
# tracepoints): both are proven here and in the guests.
TAPIO_TEST_SECURITY_SYSCALLS=dispatch "${cargo[@]}" test --release -p tapio --test security || status=1
touch "$host_done"
# CPU-bound like the guests, and not waited on (the matrix takes longer):
# niced too, so the guests' tests keep their share.
nice -n 10 make --no-print-directory fuzz || status=1

echo "== kernel matrix (started with the host's tests; its output follows when it ends)"
wait "$matrix" || status=1
cat "$matrix_log"
exit "$status"

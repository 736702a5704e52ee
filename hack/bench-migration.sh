#!/usr/bin/env bash
# A namespace of 8 volumes of 256 MiB migrated through moto S3 on loopback, each step timed,
# against its largest volume migrated alone (migration/examples/migration_bench.rs). Needs
# the test servers (hack/install-test-servers.sh, run here). FERRY_MIGRATION_BENCH_VOLUMES,
# FERRY_MIGRATION_BENCH_MIB and FERRY_MIGRATION_BENCH_WIDTHS change the shape.
set -euo pipefail
cd "$(dirname "$0")/.."
hack/install-test-servers.sh >/dev/null
nproc; grep -m1 'model name' /proc/cpuinfo || true
exec cargo run --quiet --release -p ferry-migration --example migration_bench

#!/usr/bin/env bash
# ferry export + import vs restic backup + restore of one 2 GiB ext4 image, into a local
# folder and through moto S3 on loopback, then the incremental upload of a second version
# (e2e/examples/transfer_bench.rs). Needs root (loop mount), restic (Debian) and the test
# servers (hack/install-test-servers.sh).
#
# `hack/bench-transfer.sh sparse`: peak RSS of export and import of a 1 TiB sparse volume
# as its data grows (e2e/examples/sparse_rss_bench.rs; FERRY_BENCH_DATA_GIB, default 8,16;
# the figures in docs/benchmarks.md ran 8,16,32,64).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = sparse ]; then
  command -v /usr/bin/time >/dev/null || apt-get install -y -q time >/dev/null
  cargo build --quiet --release -p ferryctl
  FERRYCTL_BIN=$PWD/target/release/ferryctl exec cargo run --quiet --release -p ferry-e2e --example sparse_rss_bench
fi
[ "$(id -u)" -eq 0 ] || { echo "bench-transfer: needs root (loop mount)" >&2; exit 1; }
command -v restic >/dev/null || apt-get install -y -q restic >/dev/null
hack/install-test-servers.sh >/dev/null
nproc; grep -m1 'model name' /proc/cpuinfo || true; restic version
# FERRY_BENCH_RUSTIC=1: rustic (crates.io rustic-rs) beside restic; built once into
# .cache/rustic (about 10 minutes on 2 cores).
if [ "${FERRY_BENCH_RUSTIC:-}" = 1 ]; then
  [ -x .cache/rustic/bin/rustic ] || cargo install --quiet --locked rustic-rs --root .cache/rustic
  export RUSTIC_BIN=$PWD/.cache/rustic/bin/rustic
  "$RUSTIC_BIN" --version
fi
cargo build --quiet --release -p ferryctl
FERRYCTL_BIN=$PWD/target/release/ferryctl cargo run --quiet --release -p ferry-e2e --example transfer_bench

#!/usr/bin/env bash
# fio and pgbench through a mounted ferry volume vs ext4 on a loop device over a plain local
# file, same run, same jobs (e2e/examples/fio_bench.rs), then an fsync's cost on moto S3.
# Needs root, fio (hack/install-node-tools.sh) and PostgreSQL (Debian's postgresql, installed
# here); moto comes from hack/install-test-servers.sh.
#   FERRY_BENCH_DIR       where the chunk store and the plain file go (default .cache/bench-node)
#   FERRY_BENCH_SIZE_MIB  file size each job works on (default 1024)
#   FERRY_BENCH_SECS      duration of the random jobs (default 20)
# `hack/bench-node.sh pause` instead measures the I/O pause a writer sees across a node
# plugin restart, a volume-server upgrade and a volume server killed alone
# (e2e/examples/restart_pause.rs; FERRY_BENCH_ROUNDS events of each, default 5).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "bench-node: needs root (loop devices, FUSE, mounts)" >&2; exit 1; }
hack/install-node-tools.sh >/dev/null
command -v pgbench >/dev/null || apt-get install -y -q postgresql >/dev/null
nproc; grep -m1 'model name' /proc/cpuinfo || true; fio --version
cargo build --quiet --release -p ferry
if [ "${1:-}" = pause ]; then
  exec env FERRY_BIN="$PWD/target/release/ferry" \
    cargo run --quiet --release -p ferry-e2e --example restart_pause
fi
FERRY_BIN=$PWD/target/release/ferry cargo run --quiet --release -p ferry-e2e --example fio_bench
# fsync latency and objects per GiB on moto S3 on loopback (store/examples/fsync_bench.rs).
hack/install-test-servers.sh >/dev/null
cargo run --quiet --release -p ferry-store --example fsync_bench

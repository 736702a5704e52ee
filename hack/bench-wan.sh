#!/usr/bin/env bash
# The object store behind a wide-area link: moto S3 on loopback with e2e/examples/wan_link.rs
# in front of it (a set round-trip time and bandwidth each way; this kernel has no netem,
# see the header of wan_link.rs for what the link models and what it does not). Through the
# link, in one run:
#   1. ferry export + import of the 2 GiB image, restic backup + restore, and rclone copy of
#      the image file up and back (the link's floor), with requests and bytes on the wire
#      (e2e/examples/transfer_bench.rs, S3 side only);
#   2. the 8-volume migration (migration/examples/migration_bench.rs);
#   3. an fsync's cost and objects per GiB of sequential writes (store/examples/fsync_bench.rs);
#   4. fio and pgbench on a volume whose chunk store is the bucket behind the link
#      (e2e/examples/fio_bench.rs).
# Needs root (loop mounts, FUSE), restic and rclone (Debian), fio and PostgreSQL for step 4.
#   FERRY_WAN_RTT_MS    round-trip time (default 20)
#   FERRY_WAN_MBIT      bandwidth each way, Mbit/s (default 1000)
#   FERRY_WAN_STEPS     which steps to run (default 1,2,3,4)
# Benchmarks are not run in CI.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "bench-wan: needs root (loop mounts, FUSE)" >&2; exit 1; }
rtt=${FERRY_WAN_RTT_MS:-20}
mbit=${FERRY_WAN_MBIT:-1000}
steps=${FERRY_WAN_STEPS:-1,2,3,4}
for t in restic:restic rclone:rclone /usr/bin/time:time; do
  command -v "${t%%:*}" >/dev/null || apt-get install -y -q "${t##*:}" >/dev/null
done
hack/install-test-servers.sh >/dev/null
hack/install-node-tools.sh >/dev/null
nproc; grep -m1 'model name' /proc/cpuinfo || true; restic version; rclone version | head -1
cargo build --quiet --release -p ferry -p ferryctl
cargo build --quiet --release -p ferry-e2e --example wan_link --example transfer_bench \
  --example fio_bench
cargo build --quiet --release -p ferry-store --example fsync_bench
cargo build --quiet --release -p ferry-migration --example migration_bench

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
moto_port=$(free_port); link_port=$(free_port); stats_port=$(free_port)
work=.cache/bench-wan; mkdir -p "$work"
.cache/test-servers/venv/bin/moto_server -H 127.0.0.1 -p "$moto_port" >"$work/moto.log" 2>&1 &
moto_pid=$!
target/release/examples/wan_link --listen "127.0.0.1:$link_port" --to "127.0.0.1:$moto_port" \
  --rtt-ms "$rtt" --mbit "$mbit" --stats "127.0.0.1:$stats_port" 2>"$work/link.log" &
link_pid=$!
cleanup() { kill "$link_pid" "$moto_pid" 2>/dev/null || true; }
trap cleanup EXIT
for _ in $(seq 50); do
  curl -s -o /dev/null "http://127.0.0.1:$moto_port/" && break
  sleep 0.2
done
curl -s -X PUT "http://127.0.0.1:$moto_port/bench" >/dev/null
export FERRY_BENCH_S3_ENDPOINT="http://127.0.0.1:$link_port"
export FERRY_BENCH_LINK_STATS="127.0.0.1:$stats_port"
echo "link: RTT $rtt ms, $mbit Mbit/s each way (wan_link), moto S3 behind it"
# One request's round trip through the link, as a client sees it.
curl -s -o /dev/null -w 'one HEAD of the bucket through the link: %{time_total} s\n' \
  -I "$FERRY_BENCH_S3_ENDPOINT/bench"

if [[ ,$steps, == *,1,* ]]; then
  echo "== 1. export + import, restic, rclone over the link"
  FERRY_BENCH_DIR=$work/transfer FERRY_BENCH_SIDES=s3 FERRY_BENCH_RCLONE=1 \
    FERRY_BENCH_ROUNDS=${FERRY_BENCH_ROUNDS:-1} \
    FERRYCTL_BIN=$PWD/target/release/ferryctl target/release/examples/transfer_bench
fi
if [[ ,$steps, == *,2,* ]]; then
  echo "== 2. 8 volumes of 256 MiB migrated over the link"
  FERRY_BENCH_DIR=$work/migration FERRY_MIGRATION_BENCH_WIDTHS=${FERRY_MIGRATION_BENCH_WIDTHS:-4,8} \
    target/release/examples/migration_bench
fi
if [[ ,$steps, == *,3,* ]]; then
  echo "== 3. fsync and sequential writes through the link"
  FERRY_BENCH_DIR=$work FERRY_BENCH_FOLDER_OPS=1 target/release/examples/fsync_bench
fi
if [[ ,$steps, == *,4,* ]]; then
  echo "== 4. fio and pgbench on a volume whose chunk store is behind the link"
  FERRY_BENCH_DIR=$work/node FERRY_BIN=$PWD/target/release/ferry \
    FERRY_BENCH_SIZE_MIB=${FERRY_BENCH_SIZE_MIB:-512} target/release/examples/fio_bench
fi

#!/usr/bin/env bash
# Chunk-store benchmarks (release build); the figures in docs/benchmarks.md come from here.
set -euo pipefail
cd "$(dirname "$0")/.."
nproc; grep -m1 'model name' /proc/cpuinfo || true
# `hack/bench.sh gc` runs the GC throughput benchmark instead (FERRY_GC_BENCH_CHUNKS chunks).
# `hack/bench.sh schedule` runs the scheduled-migration benchmark (bytes moved and wall time
# per run for 1 % changes of a 1 GiB volume; FERRY_SCHEDULE_BENCH_MIB sets the size).
if [ "${1:-}" = schedule ]; then
  exec cargo run --quiet --release -p ferry-migration --example schedule_bench
fi
# `hack/bench.sh clone` times the chunk-store work of an in-cluster clone (ApplicationClone)
# of a 1 GiB and a 100 GiB sparse volume.
if [ "${1:-}" = clone ]; then
  exec cargo run --quiet --release -p ferry-store --example clone_bench
fi
# `hack/bench.sh codec FILE` compares the chunk codecs (none, deflate, zstd) on FILE's bytes.
if [ "${1:-}" = codec ]; then
  exec cargo run --quiet --release -p ferry-store --example codec_bench "${2:?name a file}"
fi
if [ "${1:-}" = gc ]; then
  exec cargo run --quiet --release -p ferry-store --example gc_bench
fi
cargo run --quiet --release -p ferry-store --example store_bench

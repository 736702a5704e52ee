#!/usr/bin/env bash
# Chunk-store benchmarks (release build); the figures in docs/benchmarks.md come from here.
set -euo pipefail
cd "$(dirname "$0")/.."
nproc; grep -m1 'model name' /proc/cpuinfo || true
# `hack/bench.sh gc` runs the GC throughput benchmark instead (FERRY_GC_BENCH_CHUNKS chunks).
if [ "${1:-}" = gc ]; then
  exec cargo run --quiet --release -p ferry-store --example gc_bench
fi
cargo run --quiet --release -p ferry-store --example store_bench

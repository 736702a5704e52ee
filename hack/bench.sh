#!/usr/bin/env bash
# Chunk-store benchmarks (release build); the figures in docs/benchmarks.md come from here.
set -euo pipefail
cd "$(dirname "$0")/.."
nproc; grep -m1 'model name' /proc/cpuinfo || true
cargo run --quiet --release -p ferry-store --example store_bench

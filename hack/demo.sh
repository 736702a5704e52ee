#!/usr/bin/env bash
# Runs ferry's main job on its embedded default: a local walk-through on a temporary
# chunk store (CSI CreateVolume, write, CreateSnapshot, restore, verify), then a migration of
# a namespace between two in-process clusters by the migration controller.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --quiet --release -p ferry -- demo "$@"

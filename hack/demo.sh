#!/usr/bin/env bash
# Runs ferry's main job on its embedded default: a local walk-through on a temporary
# chunk store (CSI CreateVolume, write, CreateSnapshot, restore, verify), then a namespace
# kept on standby in a second in-process cluster by a MigrationSchedule (two runs) and
# failed over to it, by the migration controller.
set -euo pipefail
cd "$(dirname "$0")/.."
# The demo binary serves volumes with the ferry binary beside it: build both.
cargo build --quiet --release -p ferry -p ferry-demo
exec target/release/ferry-demo "$@"

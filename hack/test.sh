#!/usr/bin/env bash
# Runs ferry's whole test suite: installs the object-store servers the tests start (moto,
# Azurite, fake-gcs-server) and the node tools (xfsprogs, fio), checks formatting and lints, then runs every test. Server tests
# fail instead of skipping when their server is missing (FERRY_REQUIRE_SERVERS=1), and, run
# as root, tests that need root fail instead of skipping (FERRY_REQUIRE_ROOT=1).
set -euo pipefail
cd "$(dirname "$0")/.."
# One build from clean: incremental state would only cost disk (tens of GB over the
# workspace's test binaries). Exported so the e2e tests' own `cargo build` matches it.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

hack/install-test-servers.sh
hack/install-node-tools.sh
cargo fmt --all -- --check
cargo clippy --all-targets --quiet -- -D warnings
# As root, tests that need root (mounts) must run: one that would skip fails instead.
if [ "$(id -u)" = 0 ]; then export FERRY_REQUIRE_ROOT=1; fi
FERRY_REQUIRE_SERVERS=1 cargo test --workspace --no-fail-fast 2>&1 | tee .cache/test.log
# One closing line with the totals over every test binary.
awk '/^test result:/ { p += $4; f += $6; s += $8 }
     END { printf "tests: %d passed, %d failed, %d skipped\n", p, f, s }' .cache/test.log

#!/usr/bin/env bash
# Rewrites manifests/crds/ from the Rust types in migration/src/crd.
set -euo pipefail
cd "$(dirname "$0")/.."
FERRY_WRITE_CRDS=1 cargo test -q -p ferry-migration --test crds crd_files_equal_the_generated_crds
echo "manifests/crds/ regenerated"

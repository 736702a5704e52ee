#!/usr/bin/env bash
# Installs the node tools the Node service and its tests use, from Debian's packages:
# util-linux (mount, losetup, blockdev), e2fsprogs (mkfs.ext4, resize2fs, e2fsck),
# xfsprogs (mkfs.xfs, xfs_growfs, xfs_repair) and fio (benchmarks). Needs root; without it,
# prints what is missing and goes on (the tests that mount skip, saying why).
set -euo pipefail
need=()
for t in losetup:util-linux mkfs.ext4:e2fsprogs resize2fs:e2fsprogs mkfs.xfs:xfsprogs \
         xfs_growfs:xfsprogs xfs_repair:xfsprogs fio:fio; do
  command -v "${t%%:*}" >/dev/null 2>&1 || need+=("${t##*:}")
done
if [ ${#need[@]} -eq 0 ]; then
  echo "node tools present"
  exit 0
fi
mapfile -t pkgs < <(printf '%s\n' "${need[@]}" | sort -u)
if [ "$(id -u)" -ne 0 ]; then
  echo "node tools missing (${pkgs[*]}); not root, so not installing them" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q "${pkgs[@]}" >/dev/null 2>&1 || {
  apt-get update -q >/dev/null
  apt-get install -y -q "${pkgs[@]}" >/dev/null
}
echo "node tools installed: ${pkgs[*]}"

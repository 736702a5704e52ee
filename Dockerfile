# The ferry image: `ferry` (CSI plugin, migration sidecar) and `ferryctl`, with the tools
# the node data path calls (losetup, blkid, mount, mkfs and fsck for ext4 and xfs).
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p ferry -p ferryctl

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates util-linux mount e2fsprogs xfsprogs \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/ferry /src/target/release/ferryctl /usr/local/bin/
# The controllers run as this user and group; the node DaemonSets (the plugin and the volume
# host) run the image as root (privileged), since they attach loop devices and mount, with
# this group, which shares a folder store with the controllers (docs/node.md).
RUN groupadd --system --gid 65532 ferry \
 && useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent ferry
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/ferry"]

#!/usr/bin/env bash
# Installs what hearth's tests need on a fresh Debian (bookworm) machine, idempotently:
# Mesa's lavapipe Vulkan driver from bookworm-backports (Mesa 25 runs compute 5-7x faster
# than bookworm's Mesa 22), the wasm32 Rust target, and the Python `gguf` package used by
# fixture scripts. Safe to run again: it skips what is already there.
set -euo pipefail

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

if ! ls /usr/share/vulkan/icd.d/lvp_icd*.json >/dev/null 2>&1; then
  echo "setup: installing mesa-vulkan-drivers (lavapipe) from bookworm-backports"
  if ! grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/; then
    echo "deb http://deb.debian.org/debian bookworm-backports main" |
      $SUDO tee /etc/apt/sources.list.d/bookworm-backports.list >/dev/null
  fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq -t bookworm-backports \
    mesa-vulkan-drivers libvulkan1 >/dev/null
fi

if command -v rustup >/dev/null 2>&1; then
  if ! rustup target list --installed | grep -q wasm32-unknown-unknown; then
    rustup target add wasm32-unknown-unknown
  fi
  rustup component list --installed | grep -q rustfmt || rustup component add rustfmt
  rustup component list --installed | grep -q clippy || rustup component add clippy
fi

#!/usr/bin/env bash
# Installs, from Debian's packages, what a2q needs to build, test and run, then the default photo
# set for super-resolution (Launch/setup-images.sh).
# Idempotent: installs only what is missing; runs `apt-get update` only when it must install.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

packages=(libopenmpi-dev openmpi-bin libhdf5-dev libopenblas-dev libdnnl-dev pkg-config
          zlib1g-dev libpng-dev libjpeg62-turbo-dev hdf5-tools dataset-fashion-mnist iproute2 gcc procps
          util-linux)
# libpng-dev, libjpeg62-turbo-dev: image files (Sources/ImageCodecs).
# iproute2: the multi-host tests' network namespaces; gcc: their link delay line
# (Launch/delay-line.c, compiled on first use); procps: `pgrep` (tests that check no process is
# left behind); util-linux: `unshare` (the test hosts' namespaces).

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all system packages present (${packages[*]})"
else
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
      echo "setup: need root (or sudo) to install: ${missing[*]}" >&2; exit 1
    fi
  fi
  echo "setup: installing missing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
  echo "setup: done"
fi

# The default photo set for super-resolution (/usr/local/share/a2q/photos; nothing to do when
# it is complete).
"$here/setup-images.sh"

#!/usr/bin/env bash
# install-registry.sh makes sure the `docker-registry` binary (Debian's
# packaging of the CNCF distribution registry, 2.8) is on PATH. The registry
# integration tests in pkg/registry start it on a loopback port.
set -euo pipefail

if command -v docker-registry >/dev/null 2>&1; then
  echo "docker-registry is already installed: $(command -v docker-registry)"
  exit 0
fi

# Root installs directly; otherwise sudo, if it works without a password.
as_root=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    as_root=(sudo -n)
  else
    echo "install-registry.sh: docker-registry is not on PATH and installing it needs root;" >&2
    echo "  run: sudo apt-get update && sudo apt-get install -y --no-install-recommends docker-registry" >&2
    exit 1
  fi
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-registry.sh: docker-registry is not on PATH and apt-get is not available;" >&2
  echo "  install the distribution registry (2.8) by other means" >&2
  exit 1
fi

"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends docker-registry
command -v docker-registry

#!/usr/bin/env bash
# Install the Debian packages the tests need (requirements-debian.txt), only
# those missing, for CI and developers alike: redis-server (one job on many
# machines), chromium and chromium-driver (the report's pages, opened headless);
# Node with npm when no npm is on the PATH (a machine may have Node from
# elsewhere); then the npm packages of tests/servers/package.json (Azurite, for
# az://), when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

mapfile -t PACKAGES < <(grep -v '^\s*#' requirements-debian.txt | grep -v '^\s*$')

missing=()
for package in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done
if ! command -v npm >/dev/null; then
  missing+=(nodejs npm)
fi
if ((${#missing[@]})); then
  sudo=()
  if [ "$(id -u)" -ne 0 ]; then sudo=(sudo); fi
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${missing[@]}"
fi

if [ ! -x tests/servers/node_modules/.bin/azurite-blob ]; then
  npm install --no-audit --no-fund --prefix tests/servers
fi

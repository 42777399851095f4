#!/usr/bin/env bash
# Install the Debian packages the tests need, only those missing (CI and developers alike).
# redis-server: one job on many machines, on Redis;
# chromium, chromium-driver: the report's pages are opened in headless Chromium.
set -euo pipefail

PACKAGES=(redis-server chromium chromium-driver)

missing=()
for package in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done
if ((${#missing[@]})); then
  sudo=()
  if [ "$(id -u)" -ne 0 ]; then sudo=(sudo); fi
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${missing[@]}"
fi

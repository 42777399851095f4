#!/usr/bin/env bash
# Install the Debian packages the tests start as real servers, if missing:
# redis-server (many machines: one job on Redis). Needs root on a fresh machine.
set -euo pipefail
missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
if ((${#missing[@]})); then
  sudo=""; [[ $(id -u) == 0 ]] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

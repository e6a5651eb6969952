#!/usr/bin/env bash
# Real Thunderbird and neomutt against the demo gateway, checked from a tshark capture.
# Not part of CI (Thunderbird is heavy). Debian/Ubuntu only; installs what it needs (as root).
# Usage: scripts/check_clients.sh [--work-dir DIR] [--port N] [--display :97]
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
for tool in thunderbird:thunderbird Xvfb:xvfb tshark:tshark neomutt:neomutt tmux:tmux import:imagemagick; do
    command -v "${tool%%:*}" >/dev/null || need+=("${tool##*:}")
done
if ((${#need[@]})); then
    echo "check_clients: installing ${need[*]} (apt)"
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
bash scripts/setup-env.sh
exec .venv/bin/python scripts/check_clients.py "$@"

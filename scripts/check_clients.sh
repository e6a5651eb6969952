#!/usr/bin/env bash
# Real Thunderbird and neomutt against the demo gateway, checked from a tshark capture.
# Not part of CI (Thunderbird is heavy). Debian/Ubuntu only; installs what it needs (as root).
# Usage: scripts/check_clients.sh [--work-dir DIR] [--port N] [--display :97]
#        [--start-timeout S] [--session-timeout S] [--session-attempts N] [--command-timeout S]
# IMAPGATE_PYTHON=/path/to/venv/bin/python uses that environment instead of setting up .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
for tool in thunderbird:thunderbird Xvfb:xvfb tshark:tshark neomutt:neomutt tmux:tmux import:imagemagick xdotool:xdotool; do
    command -v "${tool%%:*}" >/dev/null || need+=("${tool##*:}")
done
if ((${#need[@]})); then
    echo "check_clients: installing ${need[*]} (apt)"
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq -o DPkg::Lock::Timeout=600 "${need[@]}" >/dev/null
fi
PY=${IMAPGATE_PYTHON:-}
if [ -z "$PY" ]; then
    bash scripts/setup-env.sh
    PY=.venv/bin/python
fi
# This checkout's source first (the environment may hold an editable install of another one).
export PYTHONPATH="$PWD/src:$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec "$PY" scripts/check_clients.py "$@"

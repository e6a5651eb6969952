#!/usr/bin/env bash
# Set up (if needed) and run the demo: a demo mailbox, the gateway in front of it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-env.sh
exec .venv/bin/imapgate demo "$@"

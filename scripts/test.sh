#!/usr/bin/env bash
# The whole test suite: set-up, lint, type check, tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-env.sh
echo "== ruff"; .venv/bin/ruff check src tests benchmarks
echo "== mypy (strict, src/)"; .venv/bin/mypy
echo "== pytest"; .venv/bin/pytest -q -p no:cacheprovider "$@"

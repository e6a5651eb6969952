#!/usr/bin/env bash
# The whole test suite: set-up, lint, type check, tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-env.sh
echo "== ruff"; .venv/bin/ruff check src tests benchmarks; .venv/bin/ruff format --check src tests benchmarks
echo "== mypy (strict, src/)"; .venv/bin/mypy
# Two worker processes (pytest-xdist): the suite mostly waits on real peers starting
# and stopping, so two halve its time on a 2-core machine; IMAPGATE_TEST_WORKERS=0 runs
# it in this process (for -x, --pdb and friends).
workers=${IMAPGATE_TEST_WORKERS:-2}
if [ "$workers" = 0 ]; then
    echo "== pytest"; .venv/bin/pytest -q -p no:cacheprovider "$@"
else
    echo "== pytest ($workers workers)"; .venv/bin/pytest -q -p no:cacheprovider -n "$workers" "$@"
fi

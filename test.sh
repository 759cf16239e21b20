#!/usr/bin/env bash
# Lint, format check and the test suite. Run ./setup.sh --no-run first on a fresh clone.
set -uo pipefail
cd "$(dirname "$0")"
[ -x .venv/bin/python ] || { echo "test: no .venv here; run ./setup.sh --no-run first" >&2; exit 1; }

.venv/bin/ruff check . || exit 1
.venv/bin/ruff format --check . || { echo "test: run '.venv/bin/ruff format .' to fix formatting" >&2; exit 1; }
.venv/bin/python -m pytest "$@"
status=$?
if [ $status -eq 5 ]; then
    echo "test: pytest collected no tests" >&2
    exit 1
fi
exit $status

#!/usr/bin/env bash
# Lint the tree as MMPose does: isort, yapf, flake8 (settings in setup.cfg, line length 100).
#   tools/lint.sh          # check only (what .ci/run runs before the tests)
#   tools/lint.sh --fix    # rewrite imports and formatting in place, then check
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${KEYPOSE_VENV:-$ROOT/.venv}/bin/python
cd "$ROOT"
mapfile -t FILES < <(git ls-files '*.py' | grep -v '_pb2\.py$')
if [ "${1:-}" = "--fix" ]; then
  "$PY" -m isort -q "${FILES[@]}"
  "$PY" -m yapf -i "${FILES[@]}"
fi
"$PY" -m isort --check-only --diff -q "${FILES[@]}"
"$PY" -m yapf --diff "${FILES[@]}"
"$PY" -m flake8 "${FILES[@]}"
echo "lint: clean (${#FILES[@]} files)"

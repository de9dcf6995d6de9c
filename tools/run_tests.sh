#!/usr/bin/env bash
# Installs what is missing (tools/setup_env.sh), then runs the test suite on the CPU.
#   tools/run_tests.sh            # the default, fast suite (what CI runs)
#   tools/run_tests.sh -m slow    # only the slow tests; any pytest arguments work
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$ROOT/tools/setup_env.sh"
VENV=${KEYPOSE_VENV:-$ROOT/.venv}
cd "$ROOT"
if [ $# -eq 0 ]; then set -- -m "not slow"; fi
exec "$VENV/bin/python" -m pytest tests -q -p no:cacheprovider "$@"

#!/usr/bin/env bash
# Runs every GPU check of the project on the lent GPU machine, unattended, and leaves the
# figures in $OUT (which the device tool brings back): the CUDA-only tests (`pytest -m gpu`)
# and benchmarks/gpu_suite.py. Needs the kit built here by benchmarks/device/build_kit.sh.
#
# With the device tool (one H200, ~15 min of device time in all, <= 10 min a call):
#   run(carry=[".device_kit"], timeout_s=590,
#       command="bash benchmarks/device/run_suite.sh --tests-limit 60 --steps abd --budget-s 480")
#   run(carry=[".device_kit"], timeout_s=170,   # within 30 s (still warm), if >= 3 min are left
#       command="bash benchmarks/device/run_suite.sh --no-tests --steps e --budget-s 130")
# then copy the figures into benchmarks/README.md (docs: benchmarks/README.md, GPU suite).
#
# Here, to check the kit and this script before a lease (CPU, tiny sizes):
#   PYTHON=~/.cache/keypose_ext/device-sim/bin/python bash benchmarks/device/run_suite.sh --cpu-smoke
#
# Options: --no-tests; --tests-limit S (default 90); anything else goes to gpu_suite.py.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
PY=${PYTHON:-python3}
KIT=${KEYPOSE_DEVICE_KIT:-$ROOT/.device_kit}
OUT=${OUT:-$ROOT/work_dirs/device_run}
RUN_TESTS=1
TESTS_LIMIT=90
SUITE_ARGS=()
while [ $# -gt 0 ]; do
  case $1 in
    --no-tests) RUN_TESTS=0 ;;
    --tests-limit) TESTS_LIMIT=$2; shift ;;
    --cpu-smoke) RUN_TESTS=0; SUITE_ARGS+=("$1" --children) ;;  # child processes, as there
    *) SUITE_ARGS+=("$1") ;;
  esac
  shift
done
mkdir -p "$OUT"
LOG=$OUT/run.log
exec > >(tee -a "$LOG") 2>&1
export PYTHONUNBUFFERED=1 NO_ALBUMENTATIONS_UPDATE=1 MPLBACKEND=Agg
if [ -d "$KIT/site" ]; then
  export PYTHONPATH=$KIT/site:$ROOT${PYTHONPATH:+:$PYTHONPATH}
else
  echo "[device] no kit at $KIT: using $PY's own packages (run benchmarks/device/build_kit.sh" \
    "here and carry .device_kit)"
  export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH}
fi
t0=$(date +%s)
echo "[device] $(date -u +%FT%TZ) python: $($PY -c 'import sys; print(sys.version.split()[0])')"
# mmcv's compiled ops are built against one torch release: say so plainly if this differs,
# and build them here from the kit's source if they do not load.
check_stack() {
  $PY - "$KIT" <<'PY'
import os, sys, torch
kit = sys.argv[1]
stamp = os.path.join(kit, 'built_against.txt')
want = open(stamp).read().split()[1] if os.path.isfile(stamp) else None
print(f'[device] torch {torch.__version__}, CUDA {torch.version.cuda}, '
      f'GPUs {torch.cuda.device_count()}, kit built against torch {want}')
if want and torch.__version__.split('+')[0] != want.split('+')[0]:
    print(f'[device] torch {torch.__version__} here, the kit was built against {want}')
import mmcv.ops  # noqa: F401  (mmcv's compiled extension)
import mmpose.models  # noqa: F401
import keypose_ext  # noqa: F401
print(f'[device] mmcv.ops, mmpose.models and keypose_ext import ({os.path.dirname(mmcv.ops.__file__)})')
PY
}
if ! check_stack; then
  if $PY -c 'import mmcv._ext' 2>/dev/null; then
    echo "[device] the stack does not import (above), mmcv's ops do: stopping"
    exit 2
  fi
  sdist=$(ls "$KIT"/src/mmcv-*.tar.gz 2>/dev/null | head -n1)
  [ -n "$sdist" ] || { echo "[device] the stack does not import and no mmcv source to build: stopping"; exit 2; }
  echo "[device] building mmcv's ops against this torch from $sdist ($(nproc) cores)"
  MMCV_WITH_OPS=1 FORCE_CUDA=0 MAX_JOBS=$(nproc) timeout "${MMCV_BUILD_LIMIT:-420}" \
    $PY -m pip install -q --no-deps --no-build-isolation --no-index --target /tmp/mmcv_site \
    "$sdist" || echo "[device] the mmcv build failed or ran past ${MMCV_BUILD_LIMIT:-420} s"
  export PYTHONPATH=/tmp/mmcv_site:$PYTHONPATH
  check_stack || { echo "[device] the stack does not import: stopping"; exit 2; }
fi
$PY tools/check_env.py >"$OUT/check_env.txt" 2>&1 || echo "[device] check_env.py exited $?"
rc=0
if [ "$RUN_TESTS" = 1 ]; then
  echo "[device] CUDA-only tests (pytest -m gpu, limit ${TESTS_LIMIT}s)"
  timeout -k 10 "$TESTS_LIMIT" $PY -m pytest tests -m gpu -q -p no:cacheprovider -rs \
    >"$OUT/gpu_tests.log" 2>&1
  trc=$?
  tail -n 15 "$OUT/gpu_tests.log"
  echo "[device] tests exit code $trc"
  [ $trc -eq 0 ] || rc=1
fi
echo "[device] benchmarks/gpu_suite.py ${SUITE_ARGS[*]}"
$PY benchmarks/gpu_suite.py --out "$OUT/suite" "${SUITE_ARGS[@]}"
src=$?
[ $src -eq 0 ] || rc=1
for f in gpu_suite.json gpu_suite.md sapiens_memory.json; do
  [ -f "$OUT/suite/$f" ] && cp "$OUT/suite/$f" "$OUT/"
done
# everything else in one file: the device tool brings back 8 files, 2 folders deep
tar -czf "$OUT/suite_all.tgz" -C "$OUT" suite 2>/dev/null && rm -rf "$OUT/suite"
echo "[device] done in $(( $(date +%s) - t0 )) s, exit $rc; files in $OUT: $(ls "$OUT" | tr '\n' ' ')"
exit $rc

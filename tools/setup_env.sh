#!/usr/bin/env bash
# Installs keypose_ext and its OpenMMLab stack into a virtual environment, idempotently.
#
#   tools/setup_env.sh            # creates/updates $KEYPOSE_VENV (default: <repo>/.venv)
#
# Why each step is the way it is (see README "Installation"):
# - torch/torchvision: the registry's standard pair. A local CPU-only torch wheel may be offered
#   through pip's find-links, but the registry's torchvision cannot load against it, so this
#   step ignores local pip configuration.
# - setuptools < 82: mmpose and the mmcv build import pkg_resources.
# - mmcv 2.1.0 has no wheel for this torch; it is built once per machine from its source
#   archive with its CPU ops (about 20 min on 2 cores) and the wheel kept in $KEYPOSE_CACHE.
# - mmpose/mmpretrain/mmdet --no-deps: mmpose requires chumpy, which does not build on 3.11
#   and is never imported.
# - xtcocotools from source: its wheel is built against numpy 1.x.
# - albumentations/albucore --no-deps (Meta's Sapiens augmentation through mmpose's
#   Albumentation): they require opencv-python-headless, which would overwrite
#   opencv-python's cv2 (and its GUI); 1.4.24 is the last release with the
#   albumentations.augmentations.transforms module mmpose's wrapper looks up.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${KEYPOSE_VENV:-$ROOT/.venv}
CACHE=${KEYPOSE_CACHE:-$HOME/.cache/keypose_ext}
PYTHON=${PYTHON:-python3}
STACK_VERSION=3  # bump when the pinned set below changes
STAMP=$VENV/.keypose_stack_v$STACK_VERSION

TORCH="torch==2.13.0 torchvision==0.28.0"
OPENMMLAB="mmengine==0.10.7 mmpose==1.3.2 mmpretrain==1.2.0 mmdet==3.3.0"
NODEPS_RUNTIME="albumentations==1.4.24 albucore==0.0.23"
RUNTIME="numpy==2.4.6 opencv-python==5.0.0.93 scipy matplotlib json-tricks munkres \
pycocotools einops importlib-metadata mat4py modelindex six rich termcolor addict \
shapely terminaltables pillow tqdm protobuf==6.33.0 tensorboard pytest \
flake8==7.5.0 isort==9.0.2 yapf==0.43.0 pyyaml pydantic stringzilla simsimd"

log() { printf '[setup_env] %s\n' "$*"; }

if [ ! -x "$VENV/bin/python" ]; then
  log "creating virtual environment $VENV"
  "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
# Local mirrors in this pip configuration list packages they do not hold; pip says so
# once per package, which buries real messages.
pip_q() { "$PY" -m pip "$@" 2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2); }
PIP=pip_q

if [ -f "$STAMP" ]; then
  # Everything is present: only (re)link this checkout if it is not the one installed.
  here=$("$PY" -c 'import keypose_ext, os; print(os.path.dirname(os.path.dirname(keypose_ext.__file__)))' 2>/dev/null || true)
  [ "$here" = "$ROOT" ] || $PIP install -q --no-deps --no-build-isolation -e "$ROOT"
  log "environment ready ($VENV)"
  exit 0
fi

$PIP install -q "setuptools==81.0.0" wheel cython packaging ninja

log "installing $TORCH (registry build)"
PIP_FIND_LINKS= PIP_CONFIG_FILE=/dev/null $PIP install -q $TORCH

log "installing runtime requirements"
$PIP install -q $RUNTIME "setuptools==81.0.0"

if ! $PY -c "import mmcv, mmcv.ops" 2>/dev/null; then
  mkdir -p "$CACHE/wheels"
  WHEEL=$(ls "$CACHE"/wheels/mmcv-2.1.0-*.whl 2>/dev/null | head -n1 || true)
  if [ -z "$WHEEL" ]; then
    log "building mmcv 2.1.0 with CPU ops (once per machine, ~20 min on 2 cores)"
    tmp=$(mktemp -d)
    $PIP download -q --no-deps --no-binary :all: mmcv==2.1.0 -d "$tmp"
    MMCV_WITH_OPS=1 FORCE_CUDA=0 MAX_JOBS=$(nproc) \
      $PIP wheel -q --no-deps --no-build-isolation "$tmp"/mmcv-2.1.0.tar.gz -w "$tmp/out"
    mv "$tmp"/out/mmcv-2.1.0-*.whl "$CACHE/wheels/"
    rm -rf "$tmp"
    WHEEL=$(ls "$CACHE"/wheels/mmcv-2.1.0-*.whl | head -n1)
  fi
  log "installing $WHEEL"
  $PIP install -q --no-deps "$WHEEL"
fi

log "installing xtcocotools from source (its wheel breaks under numpy 2)"
$PIP install -q --no-binary xtcocotools --no-build-isolation xtcocotools==1.14.3

log "installing $OPENMMLAB $NODEPS_RUNTIME (--no-deps)"
$PIP install -q --no-deps $OPENMMLAB $NODEPS_RUNTIME

$PIP install -q --no-deps --no-build-isolation -e "$ROOT"
$PY -c "import mmcv.ops, mmpose.models, mmpretrain.models, xtcocotools.coco, keypose_ext" \
  || { log "import check failed: see the messages above"; exit 1; }
touch "$STAMP"
log "environment ready ($VENV)"

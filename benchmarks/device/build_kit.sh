#!/usr/bin/env bash
# Builds, on this CPU machine, everything the lent GPU machine lacks to run the GPU suite,
# as one folder that the device tool carries: a ready site-packages for that machine's
# Python (3.12) and PyTorch (2.11.0), whose image holds torch, numpy, OpenCV, SciPy and
# matplotlib but no OpenMMLab package, and which cannot reach any registry.
#
#   bash benchmarks/device/build_kit.sh      # -> .device_kit/site (ignored by git)
#
# Then, with the device tool: carry [".device_kit"], command
#   bash benchmarks/device/run_suite.sh
#
# Why it is built this way:
# - mmcv 2.1.0 has no wheel for torch 2.11 and `import mmpose.models` needs its compiled
#   ops; building it on the device would spend minutes of a 15-minute lease. It is built
#   here once (CPU ops, ~15 min on 2 cores; cached in $KEYPOSE_CACHE/device-wheels)
#   against the very torch release of the device image, so the extension links there.
# - Everything is installed with --no-deps into a --target folder: the device image's own
#   torch/numpy/OpenCV stay the ones used. PYTHONPATH puts this folder first there.
# - The OpenMMLab wheels ship their model-zoo configs (.mim/): pruned to configs/_base_
#   (dataset metainfo), as is mmcv's C++ source, and the shared objects are stripped, to stay far below the 64 MiB that a call
#   carries.
# - A simulation venv (Python 3.12 + torch 2.11.0 + the image's other packages) is kept
#   in $KEYPOSE_CACHE/device-sim: it is the build environment of the compiled wheels, and
#   benchmarks/device/check_kit.sh runs the suite's CPU smoke test in it with this kit,
#   exactly as the device will import it.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CACHE=${KEYPOSE_CACHE:-$HOME/.cache/keypose_ext}
KIT=${KEYPOSE_DEVICE_KIT:-$ROOT/.device_kit}
SIM=$CACHE/device-sim
WHEELS=$CACHE/device-wheels
PY312=${PY312:-$(PYENV_VERSION=3.12.1 pyenv which python3.12 2>/dev/null || command -v python3.12)}
# The device image, as read there in 2026-11 (the device tool's KINDS.md).
DEVICE_TORCH="torch==2.11.0 torchvision==0.26.0"
# What the image already has and the build/smoke test here needs too.
IMAGE_PKGS="numpy opencv-python-headless scipy matplotlib pillow pyyaml rich tqdm einops six \
packaging cython ninja wheel pytest psutil markdown click requests tensorboard"
# Pure-Python or manylinux wheels for cp312 the image lacks.
# Pinned to the set tools/setup_env.sh installs here (the tested one).
KIT_PKGS="mmengine==0.10.7 mmpose==1.3.2 mmpretrain==1.2.0 mmdet==3.3.0 \
setuptools==81.0.0 json-tricks==3.17.3 munkres==3.0.0 addict==2.4.0 termcolor==3.3.0 \
yapf==0.43.0 platformdirs==4.14.8 mat4py==0.6.0 model-index==0.1.11 ordered-set==4.1.0 \
terminaltables==3.1.10 shapely==2.2.0 pycocotools==2.0.11 importlib-metadata==10.2.0 \
lazy-importer==0.1.0 zipp==4.1.2 albumentations==1.4.24 albucore==0.0.23 pydantic==2.14.4 \
pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 stringzilla==5.3.2 \
simsimd==6.5.16 eval-type-backport"

log() { printf '[device-kit] %s\n' "$*"; }
pipq() { "$@" 2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2); }

if [ ! -x "$SIM/bin/python" ]; then
  log "creating the simulation venv $SIM (Python 3.12)"
  "$PY312" -m venv "$SIM"
fi
SPY=$SIM/bin/python
if ! "$SPY" -c 'import torch, torchvision; assert torch.__version__.startswith("2.11.0")' \
    2>/dev/null; then
  log "installing $DEVICE_TORCH (the device image's release) into $SIM"
  PIP_CONFIG_FILE=/dev/null PIP_FIND_LINKS= pipq "$SPY" -m pip install -q $DEVICE_TORCH
fi
pipq "$SPY" -m pip install -q $IMAGE_PKGS "setuptools==81.0.0"

mkdir -p "$WHEELS"
MMCV=$(ls "$WHEELS"/mmcv-2.1.0-cp312-*.whl 2>/dev/null | head -n1 || true)
if [ -z "$MMCV" ]; then
  log "building mmcv 2.1.0 (CPU ops) against torch 2.11.0 for cp312 (~20 min on 2 cores)"
  tmp=$(mktemp -d)
  pipq "$SPY" -m pip download -q --no-deps --no-binary :all: mmcv==2.1.0 -d "$tmp"
  MMCV_WITH_OPS=1 FORCE_CUDA=0 MAX_JOBS=$(nproc) \
    pipq "$SPY" -m pip wheel -q --no-deps --no-build-isolation "$tmp"/mmcv-2.1.0.tar.gz \
    -w "$tmp/out"
  mv "$tmp"/out/mmcv-2.1.0-*.whl "$WHEELS/"
  rm -rf "$tmp"
  MMCV=$(ls "$WHEELS"/mmcv-2.1.0-cp312-*.whl | head -n1)
fi
XTC=$(ls "$WHEELS"/xtcocotools-*-cp312-*.whl 2>/dev/null | head -n1 || true)
if [ -z "$XTC" ]; then
  log "building xtcocotools from source against numpy 2 for cp312"
  tmp=$(mktemp -d)
  pipq "$SPY" -m pip wheel -q --no-deps --no-build-isolation --no-binary xtcocotools \
    xtcocotools==1.14.3 -w "$tmp"
  mv "$tmp"/xtcocotools-*.whl "$WHEELS/"
  rm -rf "$tmp"
  XTC=$(ls "$WHEELS"/xtcocotools-*-cp312-*.whl | head -n1)
fi

# mmcv's source too: should the device's torch ever differ from the one built against,
# run_suite.sh builds the ops there from it (16 cores: minutes) instead of stopping.
SDIST=$WHEELS/mmcv-2.1.0.tar.gz
[ -f "$SDIST" ] || pipq "$SPY" -m pip download -q --no-deps --no-binary :all: mmcv==2.1.0 \
  -d "$WHEELS"

log "collecting the kit's wheels for cp312"
dl=$(mktemp -d)
pipq "$SPY" -m pip download -q --no-deps -d "$dl" $KIT_PKGS

log "installing into $KIT/site"
rm -rf "$KIT"
mkdir -p "$KIT"
pipq "$SPY" -m pip install -q --no-deps --no-compile --target "$KIT/site" \
  "$dl"/*.whl "$MMCV" "$XTC"
rm -rf "$dl"
mkdir -p "$KIT/src"
cp "$SDIST" "$KIT/src/"
# Not needed at run time: model-zoo configs/demos (but configs/_base_: mmpose reads its
# dataset metainfo there), C++/CUDA sources, console scripts.
for mim in "$KIT"/site/*/.mim; do
  find "$mim" -mindepth 1 -maxdepth 1 ! -name configs -exec rm -rf {} +
  [ -d "$mim/configs" ] && find "$mim/configs" -mindepth 1 -maxdepth 1 ! -name _base_ \
    -exec rm -rf {} +
done
find "$KIT/site" -type d \( -name csrc -o -name __pycache__ \) -prune -exec rm -rf {} +
rm -rf "$KIT/site/bin"
find "$KIT/site" -name '*.so' -exec strip --strip-unneeded {} \;
"$SPY" -c 'import torch, numpy, sys; print(f"torch {torch.__version__} numpy {numpy.__version__} python {sys.version.split()[0]}")' \
  >"$KIT/built_against.txt"
log "kit ready: $(du -sh "$KIT" | cut -f1) in $KIT ($(cat "$KIT/built_against.txt"))"

#!/usr/bin/env bash
# The README's first command: install what is missing, make the built-in synthetic bottle
# video (once), train the CPU demo config on it, then evaluate the final checkpoint and
# draw predicted vs. true 3D boxes.
#   tools/demo_bottle.sh [train.py args, e.g. --cfg-options train_cfg.max_epochs=10]
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$ROOT/tools/setup_env.sh"
PY=${KEYPOSE_VENV:-$ROOT/.venv}/bin/python
cd "$ROOT"
CONFIG=configs/bottle/td-depthreg_res18_1xb16-40e_bottle-synthetic-96x96.py
WORK_DIR=work_dirs/td-depthreg_res18_1xb16-40e_bottle-synthetic-96x96

if [ ! -f data/bottle_synthetic/annotations.json ]; then
  "$PY" tools/dataset_converters/make_synthetic_bottle_video.py \
    --out data/bottle_synthetic_src/bottle.mp4 --frames 48 --bottle-data data/bottle_synthetic
fi
"$PY" tools/train.py "$CONFIG" --work-dir "$WORK_DIR" "$@"
"$PY" tools/test.py "$CONFIG" "$WORK_DIR/$(cat "$WORK_DIR/last_checkpoint" | xargs basename)" \
  --work-dir "$WORK_DIR" --show-dir vis
echo "Done: checkpoints and logs in $WORK_DIR; predicted (magenta) vs. true (green) boxes" \
     "under $WORK_DIR/<timestamp>/vis/"

#!/usr/bin/env bash
# Usage: tools/dist_train.sh CONFIG GPUS [train.py args...]
# Multi-node: set NNODES, NODE_RANK, MASTER_ADDR and PORT on every node.
# Without CUDA, GPUS processes train on the CPU over gloo (KeyposeRunner), e.g. the bottle
# demo: tools/dist_train.sh configs/bottle/td-depthreg_res18_1xb16-40e_bottle-synthetic-96x96.py 2
# PYTHON defaults to the checkout's venv (KEYPOSE_VENV, .venv), else `python`.
set -eu
CONFIG=$1
GPUS=$2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV_PYTHON=${KEYPOSE_VENV:-$ROOT/.venv}/bin/python
[ -x "$VENV_PYTHON" ] || VENV_PYTHON=python

PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" \
exec "${PYTHON:-$VENV_PYTHON}" -m torch.distributed.run \
    --nnodes="$NNODES" --node_rank="$NODE_RANK" --nproc_per_node="$GPUS" \
    --master_addr="$MASTER_ADDR" --master_port="$PORT" \
    "$ROOT/tools/train.py" "$CONFIG" --launcher pytorch "${@:3}"

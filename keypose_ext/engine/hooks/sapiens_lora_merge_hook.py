"""Deployable copies of LoRA checkpoints: adapters merged into plain ViT weights."""
import logging
import os
import os.path as osp
from typing import Dict, Optional

import torch
from mmengine.dist import master_only
from mmengine.hooks import CheckpointHook, Hook
from mmengine.logging import print_log
from mmpose.registry import HOOKS

from keypose_ext.utils.io import atomic_write
from keypose_ext.utils.sapiens_lora import merge_lora_state_dict


def merge_lora_checkpoint(src: str, dst: str) -> int:
    """Write ``src`` (an MMEngine checkpoint with adapters) to ``dst`` with every
    ``X.original_layer.weight`` + adapters merged into a plain ``X.weight``; the plain
    values of ``meta`` (epoch, iter, ...) are kept, optimizer state and numpy values
    (``dataset_meta``, which ``init_model`` then reads from the config) dropped.

    Returns:
        int: The number of merged layers (0: ``src`` had no adapters, nothing written).
    """
    # mmap: tensors are read while saving, not all at once (a 1B checkpoint is GBs)
    ckpt = torch.load(src, map_location='cpu', mmap=True, weights_only=False)
    state = ckpt.get('state_dict', ckpt)
    n = sum(k.endswith('.original_layer.weight') for k in state)
    if not n:
        return 0
    merged = merge_lora_state_dict(dict(state))
    # plain values only, so torch.load(weights_only=True) (init_model, tools/test.py)
    # reads it without allow-lists; init_model takes dataset_meta from the config then
    meta = {
        k: v
        for k, v in ckpt.get('meta', {}).items()
        if isinstance(v, (str, int, float, bool)) or v is None
    }
    meta['lora_merged_from'] = osp.basename(src)
    with atomic_write(dst) as f:
        torch.save(dict(meta=meta, state_dict=merged), f)
    return n


@HOOKS.register_module()
class SapiensLoRAMergeHook(Hook):
    """After ``CheckpointHook`` saves ``epoch_N.pth`` or ``best_*.pth`` of a model with
    low-rank adapters (``model.backbone.lora``), write ``<name>_merged.pth`` beside it:
    the same weights with ``W + scaling · up @ down`` folded into each plain layer, so
    ``tools/test.py`` and ``mmpose.apis.init_model`` load a plain ViT (with any Sapiens
    config; a config without ``lora`` builds no adapters at all). Only the newest merged
    copy of the last and of the best checkpoint are kept (a merged Sapiens-1B file is
    ~3 GB). Checkpoints without adapters are left alone.
    """

    priority = 'LOWEST'  # after CheckpointHook (VERY_LOW) has written the file

    def __init__(self):
        self._merged: Dict[str, str] = {}  # kind -> source checkpoint already merged

    def after_train_epoch(self, runner) -> None:
        self._merge_new(runner)

    def after_val_epoch(self, runner, metrics: Optional[dict] = None) -> None:
        self._merge_new(runner)

    def after_train(self, runner) -> None:
        self._merge_new(runner)

    def _merge_new(self, runner) -> None:
        ckpt_hook = next((h for h in runner.hooks if isinstance(h, CheckpointHook)), None)
        if ckpt_hook is None:
            return
        sources = {
            'last': getattr(ckpt_hook, 'last_ckpt', None),
            'best': getattr(ckpt_hook, 'best_ckpt_path', None)
        }
        for key, path in (getattr(ckpt_hook, 'best_ckpt_path_dict', None) or {}).items():
            sources[f'best {key}'] = path
        for kind, src in sources.items():
            if src and self._merged.get(kind) != src and osp.isfile(str(src)):
                self._write(kind, str(src))

    @master_only
    def _write(self, kind: str, src: str) -> None:
        dst = osp.splitext(src)[0] + '_merged.pth'
        n = merge_lora_checkpoint(src, dst)
        previous = self._merged.get(kind)
        self._merged[kind] = src
        if not n:
            return
        old = osp.splitext(previous)[0] + '_merged.pth' if previous else None
        if old and old != dst and osp.isfile(old):
            os.remove(old)
        print_log(
            f'SapiensLoRAMergeHook: {n} adapted layers merged: {dst}',
            logger='current',
            level=logging.INFO)

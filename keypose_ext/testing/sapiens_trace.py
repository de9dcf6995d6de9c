"""Random-weight Sapiens TorchScript files with the structure of Meta's release.

Meta traced the whole mmpretrain ``MAE`` model (sapiens ``pretrain/tools/deployment/
pytorch2torchscript.py``: ``FeatureExtractor(config).model``, ``backbone.out_type =
'featmap'``, ``torch.jit.trace`` at 1024×1024). :func:`build_sapiens_mae` builds the
same model from mmpretrain's own classes, as Sapiens' MAE config does: ``MAEViT``
(cls token, fixed sin-cos ``pos_embed`` of ``1 + 64·64`` tokens, final norm),
``MAEPretrainDecoder`` neck, ``MAEPretrainHead``, ``SelfSupDataPreprocessor``
(mean/std buffers). Its traced forward runs the backbone only and returns a 1-tuple
``(B, C, 64, 64)`` (``(1, 1536, 64, 64)`` for 1B).

:func:`build_plain_encoder` is a ViT without a cls token (e.g. a re-traced
fine-tuning backbone), for the other kind of file the backbone accepts.
Used by the tests and ``benchmarks/make_sapiens_torchscript.py``.
"""
import logging
import os
import os.path as osp
import warnings
from typing import Union

import torch
import torch.nn as nn

from keypose_ext.utils.sapiens_archs import resolve_sapiens_arch

# Sapiens' pretrain preprocessing (ImageNet statistics, RGB)
MEAN, STD = [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]


def build_sapiens_mae(arch: Union[str, dict],
                      img_size: int = 1024,
                      patch_size: int = 16,
                      decoder_depth: int = 8,
                      decoder_embed_dim: int = 512,
                      decoder_num_heads: int = 16,
                      seed: int = 0) -> nn.Module:
    """mmpretrain's ``MAE`` as Sapiens configures it (decoder: 8 blocks of 512, mmpretrain's
    defaults), random weights, in eval mode with ``backbone.out_type='featmap'`` (what
    Meta traced)."""
    import mmpretrain.models  # noqa: F401  (registers MAE, MAEViT, ...)
    from mmengine.logging import MMLogger
    from mmengine.registry import DefaultScope
    from mmpretrain.models.selfsup import MAE
    _, settings = resolve_sapiens_arch(arch)
    torch.manual_seed(seed)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MAE(
            backbone=dict(
                type='MAEViT',
                arch=dict(settings),
                patch_size=patch_size,
                img_size=img_size,
                final_norm=True),
            neck=dict(
                type='MAEPretrainDecoder',
                embed_dim=settings['embed_dims'],
                patch_size=patch_size,
                num_patches=(img_size // patch_size)**2,
                decoder_depth=decoder_depth,
                decoder_embed_dim=decoder_embed_dim,
                decoder_num_heads=decoder_num_heads),
            head=dict(
                type='MAEPretrainHead',
                norm_pix=True,
                patch_size=patch_size,
                loss=dict(type='PixelReconstructionLoss', criterion='L2')),
            data_preprocessor=dict(type='SelfSupDataPreprocessor', mean=MEAN, std=STD, to_rgb=True))
        logger = MMLogger.get_current_instance()
        level = logger.level
        logger.setLevel(logging.WARNING)  # init_weights logs every tensor at INFO
        try:
            model.init_weights()  # sin-cos pos_embed, cls token, xavier patch conv
        finally:
            logger.setLevel(level)
    model.backbone.out_type = 'featmap'
    return model.eval()


class _Encoder(nn.Module):
    """``backbone`` = a plain mmpretrain ViT, as in a traced pose backbone."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone

    def forward(self, x):
        return self.backbone(x)


def build_plain_encoder(arch: Union[str, dict],
                        img_size: int = 1024,
                        with_cls_token: bool = False,
                        seed: int = 0) -> nn.Module:
    """A module whose ``backbone`` is mmpretrain's ``VisionTransformer`` (featmap output)."""
    from mmpretrain.models.backbones import VisionTransformer
    _, settings = resolve_sapiens_arch(arch)
    torch.manual_seed(seed)
    vit = VisionTransformer(
        arch=dict(settings),
        img_size=img_size,
        patch_size=16,
        qkv_bias=True,
        final_norm=True,
        with_cls_token=with_cls_token,
        out_type='featmap',
        norm_cfg=dict(type='LN', eps=1e-6))
    with torch.no_grad():
        vit.pos_embed.normal_(0, 0.5)  # mmpretrain leaves zeros until init_weights
        if with_cls_token:
            vit.cls_token.normal_(0, 0.5)
    return _Encoder(vit).eval()


def trace_to_file(model: nn.Module, path: str, img_size: int, device: str = 'cpu') -> str:
    """``torch.jit.trace`` ``model`` on one ``(1, 3, S, S)`` input and save it (CPU)."""
    model = model.to(device)
    example = torch.randn(1, 3, img_size, img_size, device=device)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter('ignore')  # TorchScript deprecation, tracer warnings
        traced = torch.jit.trace(model, example).cpu()
        os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
        traced.save(str(path))
    return str(path)

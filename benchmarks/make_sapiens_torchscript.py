"""Trace a randomly initialised Sapiens encoder to TorchScript, like Meta's release.

    python benchmarks/make_sapiens_torchscript.py --arch sapiens_1b \
        --out work_dirs/bench/sapiens_1b_random_torchscript.pt2

The file has the structure of ``sapiens_1b_epoch_173_torchscript.pt2``: a
``torch.jit.trace`` at 1024x1024 of a module whose ``backbone`` is an mmpretrain
ViT (patch 16, no cls token, final norm, ``out_type='featmap'``), whose forward
returns a 1-tuple ``(B, C, 64, 64)``. Weights are random: it exists so memory and
speed can be measured without downloading 4.5 GB (benchmarks/sapiens_memory.py).
``--arch tiny --img-size 64`` makes a small file on a CPU in a second.
"""
import argparse
import os
import os.path as osp
import sys
import time
import warnings

import torch

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '..'))

TINY = dict(embed_dims=64, num_layers=2, num_heads=4, feedforward_channels=128)


class SapiensEncoderForTrace(torch.nn.Module):
    """``backbone`` = the ViT, as in the traced Sapiens MAE model."""

    def __init__(self, arch: dict, img_size: int, with_cls_token: bool = False):
        super().__init__()
        from mmpretrain.models.backbones import VisionTransformer
        self.backbone = VisionTransformer(
            arch=arch, img_size=img_size, patch_size=16, qkv_bias=True, final_norm=True,
            with_cls_token=with_cls_token, out_type='featmap',
            norm_cfg=dict(type='LN', eps=1e-6))

    def forward(self, x):
        return self.backbone(x)


def make(arch, out: str, img_size: int = 1024, device: str = 'cpu',
         with_cls_token: bool = False, seed: int = 0) -> str:
    from keypose_ext.models.backbones.sapiens_torchscript_backbone import \
        resolve_sapiens_arch
    name, settings = resolve_sapiens_arch(TINY if arch == 'tiny' else arch)
    torch.manual_seed(seed)
    model = SapiensEncoderForTrace(settings, img_size, with_cls_token).eval()
    with torch.no_grad():
        # random but not degenerate: mmpretrain leaves pos_embed at zeros until init
        model.backbone.pos_embed.normal_(0, 0.02)
    model.to(device)
    example = torch.randn(1, 3, img_size, img_size, device=device)
    t0 = time.time()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter('ignore')
        traced = torch.jit.trace(model, example)
        traced = traced.cpu()
        os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
        traced.save(out)
    n = sum(p.numel() for p in model.parameters())
    print(f'{out}: {name} ({n / 1e6:.1f} M parameters, {osp.getsize(out) / 1e9:.2f} GB), '
          f'traced at {img_size}x{img_size} on {device} in {time.time() - t0:.1f} s')
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--arch', default='sapiens_1b',
                   help='sapiens_0.3b|sapiens_0.6b|sapiens_1b|sapiens_2b|tiny')
    p.add_argument('--out', required=True)
    p.add_argument('--img-size', type=int, default=1024)
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--cls-token', action='store_true', help='trace with a cls token')
    args = p.parse_args(argv)
    make(args.arch, args.out, args.img_size, args.device, args.cls_token)


if __name__ == '__main__':
    main()

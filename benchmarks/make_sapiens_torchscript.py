"""Trace a random-weight Sapiens MAE to TorchScript, with the structure of Meta's release.

    python benchmarks/make_sapiens_torchscript.py --arch sapiens_1b \
        --out work_dirs/bench/sapiens_1b_random_torchscript.pt2

Like ``sapiens_1b_epoch_173_torchscript.pt2``: ``torch.jit.trace`` at 1024x1024 of
mmpretrain's ``MAE`` (``backbone`` = ``MAEViT`` with a cls token and a ``pos_embed`` of
4097 tokens, ``neck.*`` = the MAE decoder, ``data_preprocessor`` mean/std buffers),
whose forward returns a 1-tuple ``(1, 1536, 64, 64)`` for 1B
(keypose_ext/testing/sapiens_trace.py). Weights are random: the file exists so memory
and speed can be measured without downloading 4.5 GB (benchmarks/sapiens_memory.py).
``--arch tiny --img-size 64`` makes a small file on a CPU in a second; ``--plain``
traces a ViT without cls token or decoder instead.
"""
import argparse
import os.path as osp
import sys
import time

import torch

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '..'))

TINY = dict(embed_dims=64, num_layers=2, num_heads=4, feedforward_channels=128)
TINY_DECODER = dict(decoder_depth=1, decoder_embed_dim=32, decoder_num_heads=4)


def make(arch,
         out: str,
         img_size: int = 1024,
         device: str = 'cpu',
         plain: bool = False,
         seed: int = 0) -> str:
    from keypose_ext.testing.sapiens_trace import (build_plain_encoder, build_sapiens_mae,
                                                   trace_to_file)
    arch = TINY if arch == 'tiny' else arch
    t0 = time.time()
    model = (
        build_plain_encoder(arch, img_size, seed=seed) if plain else build_sapiens_mae(
            arch, img_size, seed=seed, **(TINY_DECODER if arch is TINY else {})))
    n_enc = sum(p.numel() for p in model.backbone.parameters())
    trace_to_file(model, out, img_size, device)
    print(f'{out}: {"plain ViT" if plain else "MAE"} encoder {n_enc / 1e6:.1f} M parameters '
          f'(+{sum(p.numel() for p in model.parameters()) / 1e6 - n_enc / 1e6:.1f} M '
          f'decoder), {osp.getsize(out) / 1e9:.2f} GB, traced at {img_size}x{img_size} on '
          f'{device} in {time.time() - t0:.1f} s')
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument(
        '--arch', default='sapiens_1b', help='sapiens_0.3b|sapiens_0.6b|sapiens_1b|sapiens_2b|tiny')
    p.add_argument('--out', required=True)
    p.add_argument('--img-size', type=int, default=1024)
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument(
        '--plain',
        action='store_true',
        help='a ViT without cls token or decoder instead of the MAE')
    args = p.parse_args(argv)
    make(args.arch, args.out, args.img_size, args.device, args.plain)


if __name__ == '__main__':
    main()

"""Bottle workflow throughput: data serving with/without the frame cache, and training steps.

    python benchmarks/bottle_throughput.py [--frames 252] [--size 640 480] [--steps 10]
        [--device cpu|cuda] [--batch 16] [--input 224]

Makes a synthetic bottle video of the given size in a temporary folder, then reports
  * samples/s of the full training pipeline (decode + affine + encode) without a cache,
    with the frame cache (`cache=True`), and with the packed-sample cache
    (`cache_device=...`, deterministic pipelines only);
  * images/s of ResNet-18 + DepthKeypointRegressionHead training steps at batch `--batch`.
"""
import argparse
import tempfile
import time

import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmpose.registry import DATASETS, MODELS

import keypose_ext  # noqa: F401
from keypose_ext.testing.synthetic_bottle import make_bottle_dataset

CONFIG = 'configs/bottle/bottle_res18_overfit.py'


def serve_rate(dataset_cfg, n):
    ds = DATASETS.build(dataset_cfg)
    t = time.perf_counter()
    for i in range(n):
        ds[i % len(ds)]
    first_pass = time.perf_counter() - t
    t = time.perf_counter()
    for i in range(n):
        ds[i % len(ds)]
    return n / first_pass, n / (time.perf_counter() - t)


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--frames', type=int, default=252)
    p.add_argument('--size', type=int, nargs=2, default=(640, 480))
    p.add_argument('--steps', type=int, default=10)
    p.add_argument('--batch', type=int, default=16)
    p.add_argument('--input', type=int, default=224)
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    args = p.parse_args()
    init_default_scope('mmpose')
    cfg = Config.fromfile(CONFIG)
    with tempfile.TemporaryDirectory() as tmp:
        make_bottle_dataset(tmp, num_frames=args.frames, size=tuple(args.size))
        base = cfg.train_dataloader.dataset.to_dict()
        base.update(data_root=tmp)
        n = args.frames
        print(f'{n} frames at {args.size[0]}x{args.size[1]}, input {args.input}')
        for name, extra in [('no cache', dict(cache=False)),
                            ('frame cache', dict(cache=True, cache_dir=tmp + '/c')),
                            ('packed cache', dict(cache=True, cache_dir=tmp + '/c',
                                                  cache_device=args.device))]:
            first, second = serve_rate(dict(base, **extra), n)
            print(f'  {name:13s} samples/s: first pass {first:8.1f}, later passes {second:8.1f}')

        model = MODELS.build(cfg.model).to(args.device).train()
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)
        ds = DATASETS.build(dict(base, cache=True, cache_dir=tmp + '/c'))
        from mmengine.dataset import pseudo_collate
        batch = pseudo_collate([ds[i % n] for i in range(args.batch)])
        data = model.data_preprocessor(batch, training=True)
        for step in range(args.steps + 2):
            if step == 2:  # two warm-up steps
                if args.device == 'cuda':
                    torch.cuda.synchronize()
                t = time.perf_counter()
            loss = sum(v for k, v in model(**data, mode='loss').items() if 'loss' in k)
            opt.zero_grad()
            loss.backward()
            opt.step()
        if args.device == 'cuda':
            torch.cuda.synchronize()
        dt = (time.perf_counter() - t) / args.steps
        print(f'  train step ({args.device}, batch {args.batch}): {dt * 1000:.0f} ms, '
              f'{args.batch / dt:.1f} img/s')


if __name__ == '__main__':
    main()

"""Bottle workflow throughput: how fast each cache mode serves a sample, and training steps.

    python benchmarks/bottle_throughput.py [--frames 64] [--size 640 480] [--input 224]
        [--repeats 5] [--steps 10] [--batch 16] [--device cpu|cuda] [--json out.json]

Makes a synthetic bottle video in a temporary folder, builds the seed config's training
dataset in each cache mode and reports samples/s and the ratio to decoding JPEGs:

  decode        cache=False: JPEG decode + affine + encode + pack per sample
  frame cache   cache=True, cache_outputs=False: frames from the shared .npy, pipeline per
                sample (what a random pipeline gets)
  output cache  cache=True (cache_outputs='auto', deterministic pipeline): the packed
                sample is kept after its first pass (the seed config's mode)
  device cache  cache_device=--device: as output cache, inputs on the device

The passes are interleaved (decode, frame, output, device, decode, ...) and each figure
is the median of --repeats passes over all frames, so a busy machine slows every mode
alike and the ratios stay comparable. Cached modes are warmed by one pass first (the
first epoch's cost is the decode row). Then it times ResNet-18 + DepthKeypointRegression
Head training steps at batch --batch on --device.
"""
import argparse
import json
import os.path as osp
import statistics
import sys
import tempfile
import time

import torch

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '..'))
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))  # gpu_suite, when imported
from gpu_suite import set_input_size  # noqa: E402

CONFIG = 'configs/bottle/td-depthreg_res18_1xb16-1000e_bottle-224x224.py'
MODES = {
    'decode': dict(cache=False, cache_outputs=False),
    'frame cache': dict(cache=True, cache_outputs=False),
    'output cache': dict(cache=True),
    'device cache': dict(cache=True),  # + cache_device
}


def serve_rates(base: dict, device: str, frames: int, repeats: int) -> dict:
    """Median samples/s of each mode over ``repeats`` interleaved passes."""
    from mmpose.registry import DATASETS
    datasets = {}
    for name, extra in MODES.items():
        cfg = dict(base, **extra)
        if name == 'device cache':
            cfg['cache_device'] = device
        datasets[name] = DATASETS.build(cfg)
        if name != 'decode':
            for i in range(frames):  # warm the cache (the first epoch)
                datasets[name][i]
    times = {name: [] for name in MODES}
    for _ in range(repeats):
        for name, ds in datasets.items():
            t = time.perf_counter()
            for i in range(frames):
                ds[i]
            times[name].append(time.perf_counter() - t)
    rates = {name: frames / statistics.median(ts) for name, ts in times.items()}
    return {
        name: dict(samples_per_s=round(r, 1), x_decode=round(r / rates['decode'], 1))
        for name, r in rates.items()
    }


def train_step_rate(cfg, dataset_cfg: dict, device: str, batch: int, steps: int) -> dict:
    from mmengine.dataset import pseudo_collate
    from mmpose.registry import DATASETS, MODELS
    model = MODELS.build(cfg.model).to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    ds = DATASETS.build(dataset_cfg)
    data = model.data_preprocessor(
        pseudo_collate([ds[i % len(ds)] for i in range(batch)]), training=True)
    for step in range(steps + 2):
        if step == 2:  # two warm-up steps
            if device == 'cuda':
                torch.cuda.synchronize()
            t = time.perf_counter()
        loss = sum(v for k, v in model(**data, mode='loss').items() if 'loss' in k)
        opt.zero_grad()
        loss.backward()
        opt.step()
    if device == 'cuda':
        torch.cuda.synchronize()
    dt = (time.perf_counter() - t) / steps
    return dict(
        device=device,
        batch=batch,
        ms_per_step=round(dt * 1000, 1),
        images_per_s=round(batch / dt, 1))


def main(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split('\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__)
    p.add_argument('--frames', type=int, default=64)
    p.add_argument('--size', type=int, nargs=2, default=(640, 480))
    p.add_argument('--input', type=int, default=224)
    p.add_argument('--repeats', type=int, default=5)
    p.add_argument('--steps', type=int, default=10, help='train steps (0: skip)')
    p.add_argument('--batch', type=int, default=16)
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--json', help='also write the figures here')
    args = p.parse_args(argv)

    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    import keypose_ext  # noqa: F401
    from keypose_ext.testing.synthetic_bottle import make_bottle_dataset
    init_default_scope('mmpose')
    cfg = Config.fromfile(CONFIG)
    set_input_size(cfg, (args.input, args.input))
    result = dict(
        frames=args.frames,
        frame_size=list(args.size),
        input=args.input,
        repeats=args.repeats,
        torch_threads=torch.get_num_threads())
    with tempfile.TemporaryDirectory() as tmp:
        make_bottle_dataset(tmp + '/data', num_frames=args.frames, size=tuple(args.size))
        base = cfg.train_dataloader.dataset.to_dict()
        base.update(data_root=tmp + '/data', cache_dir=tmp + '/cache')
        print(f'{args.frames} frames at {args.size[0]}x{args.size[1]}, input '
              f'{args.input}x{args.input}, median of {args.repeats} interleaved passes')
        result['serve'] = serve_rates(base, args.device, args.frames, args.repeats)
        for name, r in result['serve'].items():
            print(f'  {name:13s} {r["samples_per_s"]:10.1f} samples/s  '
                  f'{r["x_decode"]:6.1f}x decode')
        if args.steps:
            result['train_step'] = r = train_step_rate(cfg, dict(base, cache=True), args.device,
                                                       args.batch, args.steps)
            print(f'  train step ({r["device"]}, batch {r["batch"]}): {r["ms_per_step"]} ms,'
                  f' {r["images_per_s"]} img/s')
    if args.json:
        from keypose_ext.utils.io import atomic_write
        with atomic_write(args.json, 'w') as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == '__main__':
    main()

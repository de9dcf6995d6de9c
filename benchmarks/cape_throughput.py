"""CAPE throughput: training and validation episodes/s, and decoding time vs keypoint count.

    python benchmarks/cape_throughput.py [--config CONFIG] [--train-steps 30]
        [--val-batches 10] [--decode-reps 5] [--workers N] [--json out.json]
    python benchmarks/cape_throughput.py --tiny     # CPU smoke: tiny model, 64x64, few steps

Runs the config's own components on a synthetic MP-100 written to a temporary folder
(no download; the backbone starts from random weights): CapeEstimator with its ResNet
backbone and CapeSequenceHead, the MP100EpisodicDataset pipelines, EpisodicSampler,
CapeDataPreprocessor and the config's optimizer wrapper (AMP, accumulation, clipping).

- training: episodes/s of full optimizer iterations (data loading included) at the
  config's batch size, after 3 warm-up iterations;
- validation: episodes/s of ``val_step`` (backbone + autoregressive decoding) over
  test-mode episodes of categories with 1, 5, 17, 34 and 68 keypoints (``--tiny``: 1, 4,
  8), data included;
- decoding: for each keypoint count K, milliseconds per batch of
  ``CapeSequenceHead.decode_sequence`` alone (K decoder steps over 1..K tokens) next
  to the backbone's time for the same batch.
"""
import argparse
import json
import os
import os.path as osp
import statistics
import sys
import tempfile
import time

import torch

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '..'))
# albumentations (imported by mmpose) asks PyPI for updates at import: never wait on it.
os.environ.setdefault('NO_ALBUMENTATIONS_UPDATE', '1')

CONFIG = 'configs/cape/capeseq_res50_1xb8-200e_mp100-split1-1shot-256x256.py'
# Synthetic split 1 of 7 categories: test = the 1st, val = the 2nd, train = the rest,
# so the training file holds categories with these keypoint counts.
DECODE_COUNTS = (1, 5, 17, 34, 68)
TINY_DECODE_COUNTS = (1, 4, 8)
TINY_INPUT = (64, 64)


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split('\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__)
    p.add_argument('--config', default=CONFIG)
    p.add_argument('--train-steps', type=int, default=30)
    p.add_argument('--val-batches', type=int, default=10)
    p.add_argument('--decode-reps', type=int, default=5)
    p.add_argument('--images-per-category', type=int, default=16)
    p.add_argument('--workers', type=int, help='dataloader workers (default: the config\'s)')
    p.add_argument(
        '--tiny',
        action='store_true',
        help='CPU smoke test: 2-stage ResNet-18, small head, 64x64, batch 2')
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--json', help='write the results here')
    return p.parse_args(argv)


def _sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def _configure(cfg, args, data_root):
    """Point the config at the synthetic data; shrink it with --tiny."""
    for loader in (cfg.train_dataloader, cfg.val_dataloader):
        loader.dataset.data_root = data_root
        loader.persistent_workers = False
        if args.workers is not None:
            loader.num_workers = args.workers
    cfg.model.backbone.init_cfg = None  # random weights: nothing is downloaded
    if args.tiny:
        cfg.model.backbone = dict(
            type='ResNet',
            depth=18,
            num_stages=2,
            strides=(1, 2),
            dilations=(1, 1),
            out_indices=(1, ),
            init_cfg=None)
        cfg.model.head.update(
            in_channels=128, embed_dims=32, num_layers=1, num_heads=4, ffn_dims=64)
        for loader in (cfg.train_dataloader, cfg.val_dataloader):
            loader.batch_size = 2
            loader.num_workers = 0 if args.workers is None else args.workers
            for t in loader.dataset.pipeline:
                if t.type == 'TopdownAffine':
                    t.input_size = TINY_INPUT


def _timed_steps(loader, steps, warmup, step_fn, device):
    """Median seconds per batch (data included) after ``warmup`` batches."""
    times, it = [], iter(loader)
    for i in range(warmup + steps):
        _sync(device)
        t = time.perf_counter()
        step_fn(next(it))
        _sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def run(args) -> dict:
    from mmengine.logging import MessageHub, MMLogger
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import init_default_scope
    from mmengine.runner import Runner
    from mmpose.registry import MODELS

    import keypose_ext  # noqa: F401
    from keypose_ext.testing.synthetic_mp100 import make_synthetic_mp100
    from keypose_ext.utils.cli import load_config

    init_default_scope('mmpose')
    MessageHub.get_instance('cape_throughput')
    MMLogger.get_instance('cape_throughput', log_level='WARNING')  # no init_weights table
    device = torch.device(args.device)
    cfg = load_config(args.config)
    tmp = tempfile.mkdtemp(prefix='cape_throughput_')
    counts = TINY_DECODE_COUNTS if args.tiny else DECODE_COUNTS
    make_synthetic_mp100(
        tmp,
        keypoint_counts=(5, 8) + counts,
        images_per_category=args.images_per_category,
        image_size_range=(96, 160) if args.tiny else (200, 320))
    _configure(cfg, args, tmp)
    input_size = next(t.input_size for t in cfg.val_dataloader.dataset.pipeline
                      if t.type == 'TopdownAffine')
    result = dict(
        config=args.config,
        device=str(device),
        tiny=args.tiny,
        input_size=list(input_size),
        backbone_depth=cfg.model.backbone.depth,
        train_batch=cfg.train_dataloader.batch_size,
        val_batch=cfg.val_dataloader.batch_size)
    if device.type == 'cuda':
        result['gpu'] = torch.cuda.get_device_name(device)

    model = MODELS.build(cfg.model).to(device)
    model.init_weights()
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    optim_wrapper.initialize_count_status(model, 0, 10**9)

    # ---- training: full iterations, data loading included
    train_cfg = cfg.train_dataloader.copy()
    train_cfg.dataset.episodes_per_epoch = 10**6
    loader = Runner.build_dataloader(train_cfg, seed=0)
    model.train()
    s = _timed_steps(loader, args.train_steps, 3, lambda b: model.train_step(b, optim_wrapper),
                     device)
    result['train'] = dict(
        s_per_iter=round(s, 4),
        episodes_per_s=round(train_cfg.batch_size / s, 1),
        steps=args.train_steps)

    # ---- validation: test-mode episodes over the training file's categories
    val_cfg = cfg.val_dataloader.copy()
    val_cfg.dataset.update(
        ann_file=train_cfg.dataset.ann_file,
        num_queries_per_episode=1,
        episodes_per_category=max(4, val_cfg.batch_size))
    val_cfg.sampler = dict(type='DefaultSampler', shuffle=True, seed=0)
    loader = Runner.build_dataloader(val_cfg, seed=0)
    model.eval()
    with torch.no_grad():
        s = _timed_steps(loader, min(args.val_batches, len(loader) - 1), 1, model.val_step, device)
    result['val'] = dict(
        s_per_batch=round(s, 4),
        episodes_per_s=round(val_cfg.batch_size / s, 1),
        keypoint_counts=list(counts))

    # ---- decoding time vs keypoint count (batches of one category each)
    dataset = loader.dataset
    by_k = {}
    for i in range(len(dataset)):
        item = dataset[i]
        k = int(item['data_samples'].metainfo['num_keypoints'])
        by_k.setdefault(k, [])
        if len(by_k[k]) < val_cfg.batch_size:
            by_k[k].append(item)
    rows = []
    with torch.no_grad():
        for k in sorted(by_k):
            items = by_k[k]
            data = model.data_preprocessor(
                dict(
                    inputs=[x['inputs'] for x in items],
                    data_samples=[x['data_samples'] for x in items]), False)
            inputs, samples = data['inputs'], data['data_samples']
            backbone_t, decode_t = [], []
            for _ in range(args.decode_reps + 1):
                _sync(device)
                t0 = time.perf_counter()
                feats = model.extract_feat(inputs)
                _sync(device)
                t1 = time.perf_counter()
                episode = model.head.collate_episode(samples, inputs.shape[1] - 1, device)
                # end_threshold > 1: never an early end, all K steps are timed
                out = model.head.decode_sequence(feats, episode, end_threshold=2.0)
                _sync(device)
                t2 = time.perf_counter()
                backbone_t.append(t1 - t0)
                decode_t.append(t2 - t1)
            rows.append(
                dict(
                    num_keypoints=k,
                    batch=len(items),
                    backbone_ms=round(1000 * statistics.median(backbone_t[1:]), 2),
                    decode_ms=round(1000 * statistics.median(decode_t[1:]), 2),
                    decoded=int(out['num_decoded'].max())))
    result['decode'] = rows
    return result


def print_table(result: dict) -> None:
    print(f'CAPE {result["config"]} on {result.get("gpu", result["device"])}, input '
          f'{result["input_size"]}, ResNet-{result["backbone_depth"]}')
    t, v = result['train'], result['val']
    print(f'  train: {t["episodes_per_s"]} episodes/s (batch {result["train_batch"]}, '
          f'{t["s_per_iter"] * 1000:.1f} ms/iter)')
    print(f'  val:   {v["episodes_per_s"]} episodes/s (batch {result["val_batch"]}, '
          f'K in {v["keypoint_counts"]})')
    print('  | K | batch | backbone ms | decode ms | decode ms per keypoint |')
    print('  |---|---|---|---|---|')
    for r in result['decode']:
        print(f'  | {r["num_keypoints"]} | {r["batch"]} | {r["backbone_ms"]} | '
              f'{r["decode_ms"]} | {r["decode_ms"] / r["num_keypoints"]:.2f} |')


def main(argv=None) -> int:
    args = parse_args(argv)
    result = run(args)
    print_table(result)
    if args.json:
        from keypose_ext.utils.io import atomic_write
        with atomic_write(args.json, 'w') as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == '__main__':
    sys.exit(main())

"""Measure the peak GPU memory of both Sapiens fine-tuning phases under a memory cap.

    python benchmarks/make_sapiens_torchscript.py --arch sapiens_1b \
        --out work_dirs/bench/sapiens_1b_random_torchscript.pt2
    python benchmarks/sapiens_memory.py \
        --checkpoint work_dirs/bench/sapiens_1b_random_torchscript.pt2 \
        --config configs/sapiens/stage1_gtx1650.py --limit-gib 4 --phase2-layers 1 2 3 \
        --out work_dirs/bench/sapiens_memory_gtx1650.json

What runs is the real thing: the config's model (SapiensTorchScriptBackbone loading
the TorchScript file into the eager ViT, HeatmapHead), its optimizer wrapper (AMP,
accumulation, layer-decay AdamW), its training pipeline on a synthetic COCO set, and
SapiensPhaseSwitchHook switching phase 1 -> phase 2. With CUDA the process is capped
by ``torch.cuda.set_per_process_memory_fraction`` to ``--limit-gib`` (a 4 GB card on
a bigger GPU); each phase runs ``--iters`` iterations (default: two optimizer steps,
so AdamW state exists) and reports ``max_memory_allocated``/``reserved`` next to the
estimate of keypose_ext/utils/sapiens_memory_estimate.py. An OOM is reported as such.
Without CUDA (``--tiny`` on a CPU) it runs the same steps and reports time only.
"""
import argparse
import json
import os.path as osp
import sys
import tempfile
import time

import torch

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '..'))

from mmengine.config import DictAction  # noqa: E402

GiB = 1024**3
TINY = dict(embed_dims=64, num_layers=2, num_heads=4, feedforward_channels=128)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__)
    p.add_argument('--checkpoint', required=True, help='TorchScript file of the arch')
    p.add_argument('--config', default='configs/sapiens/stage1_gtx1650.py')
    p.add_argument('--limit-gib', type=float, default=4.0,
                   help='per-process CUDA memory cap (0 = none)')
    p.add_argument('--iters', type=int, help='iterations per phase '
                   '(default 2 x accumulative_counts)')
    p.add_argument('--phase2-layers', type=int, nargs='+',
                   help='phase-2 trainable_layers to measure, ascending (default: the '
                   "config's)")
    p.add_argument('--no-val', action='store_true', help='skip the validation forward')
    p.add_argument('--tiny', action='store_true',
                   help=f'use the tiny arch {TINY} (CPU smoke test)')
    p.add_argument('--out', help='write the results as JSON here')
    p.add_argument('--cfg-options', nargs='+', action=DictAction)
    return p.parse_args(argv)


def _cycle(loader):
    while True:
        yield from loader


def _peak(device):
    if device.type != 'cuda':
        return None, None
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device), torch.cuda.max_memory_reserved(device)


def main(argv=None) -> int:
    args = parse_args(argv)
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import DefaultScope
    from mmengine.runner import Runner

    import keypose_ext  # noqa: F401  (registers the components)
    from keypose_ext.testing.synthetic_coco import make_synthetic_coco
    from keypose_ext.engine.hooks.sapiens_phase_switch_hook import SapiensPhaseSwitchHook
    from keypose_ext.utils import sapiens_memory_estimate as mem
    from keypose_ext.utils.cli import load_config
    from mmpose.registry import MODELS

    cfg = load_config(args.config, args.cfg_options)
    DefaultScope.get_instance('sapiens_memory', scope_name='mmpose')
    bb = cfg.model.backbone
    bb.checkpoint = args.checkpoint
    if args.tiny:
        bb.arch = dict(TINY)
        cfg.model.head.in_channels = TINY['embed_dims']
    hook_cfg = next(h for h in cfg.custom_hooks if h['type'] == 'SapiensPhaseSwitchHook')
    hook = SapiensPhaseSwitchHook(**{k: v for k, v in hook_cfg.items() if k != 'type'})
    layers = args.phase2_layers or [hook.phase2.get('trainable_layers', -1)]
    accum = int(cfg.optim_wrapper.get('accumulative_counts', 1))
    iters = args.iters or 2 * accum
    batch = int(cfg.train_dataloader.batch_size)

    device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    result = dict(config=args.config, checkpoint=args.checkpoint, device=str(device),
                  batch_size=batch, accumulative_counts=accum, iters=iters,
                  input_hw=list(bb.img_size), phases=[])
    if device.type == 'cuda':
        total = torch.cuda.get_device_properties(device).total_memory
        result['gpu'] = torch.cuda.get_device_name(device)
        if args.limit_gib:
            frac = min(1.0, args.limit_gib * GiB / total)
            torch.cuda.set_per_process_memory_fraction(frac, device)
            result['limit_gib'] = args.limit_gib
        print(f'{result["gpu"]}: capped at {args.limit_gib} GiB of {total / GiB:.1f} GiB')

    tmp = tempfile.mkdtemp(prefix='sapiens_mem_')
    make_synthetic_coco(tmp, dict(train=8, val=4), image_size=(320, 240))
    loader_cfg = cfg.train_dataloader.copy()
    loader_cfg.update(num_workers=0, persistent_workers=False)
    loader_cfg.dataset.update(data_root=tmp)
    loader = Runner.build_dataloader(loader_cfg, seed=0)

    t0 = time.time()
    model = MODELS.build(cfg.model)
    model.to(device)  # as the runner does: before init_weights
    model.init_weights()
    result['load_s'] = round(time.time() - t0, 1)
    backbone = model.backbone
    arch = backbone.arch_settings
    hw = tuple(bb.img_size)
    fbytes = 4 if backbone.frozen_dtype in (None, torch.float32) else 2
    if device.type == 'cuda':
        result['weights_allocated_gib'] = round(torch.cuda.memory_allocated(device) / GiB, 3)
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    optim_wrapper.initialize_count_status(model, 0, 10**9)
    batches = _cycle(loader)

    runs = [(1, 0)] + [(2, n) for n in layers]
    for phase, n in runs:
        name = 'phase 1 (frozen)' if phase == 1 else f'phase 2 (trainable_layers={n})'
        hook.phase2['trainable_layers'] = n
        hook.apply_phase(model, phase, optim_wrapper)
        model.train()
        cp = backbone.with_cp
        est = mem.estimate_phase_memory(arch, hw, batch, n, fbytes, with_cp=cp)['total']
        row = dict(name=name, trainable_layers=n, with_cp=cp,
                   estimate_gib=round(est / GiB, 3))
        if device.type == 'cuda':
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        t1 = time.time()
        try:
            for _ in range(iters):
                log = model.train_step(next(batches), optim_wrapper)
            alloc, reserved = _peak(device)
            row.update(status='ok', s_per_iter=round((time.time() - t1) / iters, 3),
                       loss=round(float(log['loss'].detach()), 5))
            if alloc is not None:
                row.update(max_allocated_gib=round(alloc / GiB, 3),
                           max_reserved_gib=round(reserved / GiB, 3))
        except torch.OutOfMemoryError as e:
            row.update(status='OOM', error=str(e).split('\n')[0][:300])
            optim_wrapper.zero_grad()
        result['phases'].append(row)
        print(json.dumps(row))
        if row['status'] == 'OOM':
            break

    if not args.no_val:
        model.eval()
        vcfg = cfg.val_dataloader.copy()
        vcfg.update(num_workers=0, persistent_workers=False)
        vcfg.dataset.update(data_root=tmp)
        vbatch = next(iter(Runner.build_dataloader(vcfg, seed=0)))
        if device.type == 'cuda':
            torch.cuda.reset_peak_memory_stats(device)
        row = dict(name=f'validation forward (batch {cfg.val_dataloader.batch_size}, '
                   'flip test)')
        try:
            with torch.no_grad():
                model.val_step(vbatch)
            alloc, reserved = _peak(device)
            row['status'] = 'ok'
            if alloc is not None:
                row.update(max_allocated_gib=round(alloc / GiB, 3),
                           max_reserved_gib=round(reserved / GiB, 3))
        except torch.OutOfMemoryError as e:
            row.update(status='OOM', error=str(e).split('\n')[0][:300])
        result['phases'].append(row)
        print(json.dumps(row))

    print('\n| phase | estimate (GiB) | max allocated (GiB) | max reserved (GiB) | s/iter |')
    print('|---|---|---|---|---|')
    for r in result['phases']:
        print(f'| {r["name"]} | {r.get("estimate_gib", "")} | '
              f'{r.get("max_allocated_gib", r["status"])} | '
              f'{r.get("max_reserved_gib", "")} | {r.get("s_per_iter", "")} |')
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(result, f, indent=1)
    return 0 if all(r['status'] == 'ok' for r in result['phases']) else 1


if __name__ == '__main__':
    sys.exit(main())

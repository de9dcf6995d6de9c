"""Measure GPU memory and step time of every Sapiens phase and phase-2 route under a cap.

(About 300 lines: one command builds each route the way training builds it.)

    python benchmarks/sapiens_memory.py            # one command, < 5 min on one large GPU

Without ``--checkpoint`` it first traces a random-weight Sapiens-1B with the structure of
Meta's release (keypose_ext/testing/sapiens_trace.py: MAE, cls token, 4097-token
``pos_embed``, decoder, 1024x1024). Then, with ``torch.cuda.set_per_process_memory_fraction``
capping PyTorch at ``--limit-gib`` (4), it trains the real configs at their 384x288 input and
batch ``--batch-size`` (2) on synthetic COCO through their training pipeline:

- ``phase 1`` and ``lora`` (phase 2): configs/sapiens/stage1_gtx1650.py, switched by
  SapiensPhaseSwitchHook as in training;
- ``last_blocks``: configs/sapiens/td-hm_sapiens-1b-last2_1xb2-110e_coco-384x288.py;
- ``full``: the same model switched to every parameter on the GPU (expected: OOM);
- ``full_offload``: the FSDP wrapper (CPU offload) of
  configs/sapiens/td-hm_sapiens-1b-fsdp-offload_1xb2-100e_coco-384x288.py in a one-process group.

Each row has ``max_memory_allocated``/``reserved``, s/iter (after a warm-up iteration),
the estimate of keypose_ext/utils/sapiens_memory_estimate.py for that config, and
``fits_card`` = reserved + the measured CUDA context <= the cap (what a real card of
that size must hold). Results: ``--out`` (default benchmarks/results/sapiens_memory.json,
read by tools/check_env.py). Without CUDA it prints that it needs a GPU and exits 0;
``--tiny --allow-cpu`` runs the same code path on a tiny arch on the CPU (a test does).
"""
import argparse
import datetime
import gc
import json
import os
import os.path as osp
import socket
import sys
import tempfile
import time

import torch

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)
# albumentations (imported by mmpose) otherwise asks PyPI for updates at import
os.environ.setdefault('NO_ALBUMENTATIONS_UPDATE', '1')

GiB = 1024**3
TINY = dict(embed_dims=64, num_layers=2, num_heads=4, feedforward_channels=128)
CONFIGS = {
    'phase 1': 'stage1_gtx1650.py',
    'lora': 'stage1_gtx1650.py',
    'last_blocks': 'td-hm_sapiens-1b-last2_1xb2-110e_coco-384x288.py',
    'full': 'td-hm_sapiens-1b-last2_1xb2-110e_coco-384x288.py',
    'full_offload': 'td-hm_sapiens-1b-fsdp-offload_1xb2-100e_coco-384x288.py'
}
DEFAULT_OUT = osp.join(ROOT, 'benchmarks', 'results', 'sapiens_memory.json')


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split('\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__)
    p.add_argument(
        '--checkpoint',
        help='Sapiens TorchScript file (default: trace a random '
        "one of Meta's structure)")
    p.add_argument('--arch', default='sapiens_1b')
    p.add_argument('--limit-gib', type=float, default=4.0, help='the card size to emulate')
    p.add_argument('--batch-size', type=int, default=2)
    p.add_argument('--iters', type=int, default=5, help='iterations per row (1 warm-up)')
    p.add_argument('--routes', nargs='+', default=list(CONFIGS), choices=list(CONFIGS))
    p.add_argument('--out', default=DEFAULT_OUT)
    p.add_argument('--tiny', action='store_true', help=f'arch {TINY} (code-path check)')
    p.add_argument(
        '--allow-cpu',
        action='store_true',
        help='run without CUDA (no memory '
        'figures; with --tiny)')
    return p.parse_args(argv)


def _cfg(name, args, data_root):
    from keypose_ext.utils.cli import load_config
    cfg = load_config(osp.join(ROOT, 'configs', 'sapiens', name))
    cfg.model.backbone.checkpoint = None  # weights: the encoder state dict read once
    if args.tiny:
        cfg.model.backbone.arch = dict(TINY)
        cfg.model.head.in_channels = TINY['embed_dims']
    cfg.train_dataloader.update(batch_size=args.batch_size, num_workers=0, persistent_workers=False)
    cfg.train_dataloader.dataset.data_root = data_root
    # memory does not depend on accumulation; 2 gives an optimizer step every 2 iterations
    cfg.optim_wrapper.accumulative_counts = 2
    try:
        import albumentations  # noqa: F401
    except ImportError:  # image-only augmentation: no effect on memory
        cfg.train_dataloader.dataset.pipeline = [
            t for t in cfg.train_dataloader.dataset.pipeline if t.type != 'Albumentation'
        ]
    return cfg


def _batches(cfg):
    from mmengine.runner import Runner
    loader = Runner.build_dataloader(cfg.train_dataloader, seed=0)
    while True:
        yield from loader


def _context_bytes(device) -> int:
    """Device memory in use outside PyTorch's allocator (CUDA context, cuBLAS handles)."""
    torch.cuda.synchronize(device)
    free, total = torch.cuda.mem_get_info(device)
    return int(total - free - torch.cuda.memory_reserved(device))


def _measure(row, step, iters, device):
    """Run ``step`` ``iters`` times (the first as warm-up for the timing)."""
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)
    t0 = None
    try:
        for i in range(iters):
            if i == 1:
                t0 = time.time()
            log = step()
        if device.type == 'cuda':
            torch.cuda.synchronize(device)
            row.update(
                max_allocated_gib=round(torch.cuda.max_memory_allocated(device) / GiB, 3),
                max_reserved_gib=round(torch.cuda.max_memory_reserved(device) / GiB, 3))
        row.update(
            status='ok',
            loss=round(float(log['loss'].detach()), 5),
            s_per_iter=round((time.time() - t0) / max(1, iters - 1), 3) if t0 else None)
    except torch.OutOfMemoryError as e:
        row.update(status='OOM', error=str(e).split('\n')[0][:300])


def _estimate(row, cfg, batch_size):
    from keypose_ext.utils import sapiens_memory_estimate as mem
    est = mem.estimate_config(cfg, batch_size=batch_size)[row['phase']]
    row.update(
        estimate_total_gib=round(est['total'] / GiB, 3),
        estimate_reserved_gib=round(est['reserved'] / GiB, 3))


def phase_hook(cfg, phase2=None):
    """The config's SapiensPhaseSwitchHook (its first custom hook), with ``phase2``
    replacing its route if given (also in ``cfg``, which the estimate reads)."""
    from keypose_ext.engine.hooks.sapiens_phase_switch_hook import SapiensPhaseSwitchHook
    hook_cfg = dict(cfg.custom_hooks[0])
    hook_cfg.pop('type')
    if phase2:
        hook_cfg['phase2'] = phase2
        cfg.custom_hooks[0].phase2 = phase2
    return SapiensPhaseSwitchHook(**hook_cfg)


def _single_device_routes(args, res, enc_sd, data_root, device):
    from mmengine.optim import build_optim_wrapper
    from mmpose.registry import MODELS

    plan = [('phase 1', 1, None), ('lora', 2, None), ('last_blocks', 2, None),
            ('full', 2, dict(mode='full', with_cp=True))]
    built = {}
    for route, phase, phase2 in plan:
        if route not in args.routes:
            continue
        name = CONFIGS[route]
        cfg = _cfg(name, args, data_root)
        row = dict(route=route, phase=f'phase {phase}', config=f'configs/sapiens/{name}')
        if name not in built:  # phase 1 and lora share a model, last_blocks and full too
            built.clear()
            gc.collect()
            torch.cuda.empty_cache() if device.type == 'cuda' else None
            model = MODELS.build(cfg.model)
            model.backbone.load_state_dict(dict(enc_sd), strict=True)
            model.to(device)  # as the runner does, in the phase the config builds
            ow = build_optim_wrapper(model, cfg.optim_wrapper)
            ow.initialize_count_status(model, 0, 10**9)
            built[name] = (model, ow, _batches(cfg))
        model, ow, batches = built[name]
        hook = phase_hook(cfg, phase2)
        _estimate(row, cfg, args.batch_size)
        try:
            hook.apply_phase(model, phase, ow)
            model.train()
        except torch.OutOfMemoryError as e:  # e.g. casting 1.1 B parameters to fp32
            row.update(status='OOM', error=str(e).split('\n')[0][:300])
        else:
            _measure(row, lambda: model.train_step(next(batches), ow), args.iters, device)
        res['rows'].append(row)
        print(json.dumps(row))
    built.clear()


def _offload_route(args, res, enc_sd, data_root, device):
    import torch.distributed as dist
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import MODEL_WRAPPERS
    from mmpose.registry import MODELS
    name = CONFIGS['full_offload']
    cfg = _cfg(name, args, data_root)
    row = dict(route='full_offload', phase='phase 2', config=f'configs/sapiens/{name}')
    _estimate(row, cfg, args.batch_size)
    own_group = not dist.is_initialized()
    if own_group:  # a one-process group, as tools/dist_train.sh CONFIG 1
        with socket.socket() as s:
            s.bind(('127.0.0.1', 0))
            port = s.getsockname()[1]
        # no RANK/LOCAL_RANK in os.environ: code run after this in the same process
        # (a test) would take it for a launched distributed job
        dist.init_process_group(
            'nccl' if device.type == 'cuda' else 'gloo',
            init_method=f'tcp://127.0.0.1:{port}',
            rank=0,
            world_size=1)
    gc.collect()
    if device.type == 'cuda':
        torch.cuda.empty_cache()
    model = MODELS.build(cfg.model)  # fp32 on the CPU: FSDP moves one unit at a time
    model.backbone.load_state_dict(dict(enc_sd), strict=True)
    model.data_preprocessor.to(device)  # as FSDPStrategy does
    wrapper_cfg = cfg.strategy.model_wrapper.to_dict()
    device_id = device.index or 0
    if device.type != 'cuda':
        # the code path only: FSDP computes on the CPU in float32, nothing pinned (pinned
        # host memory needs a CUDA driver; the parameters are in host memory anyway)
        wrapper_cfg.update(cpu_offload=False, mixed_precision=None)
        device_id = device
        row['note'] = 'CPU code-path check: no offload, float32'
    try:
        wrapped = MODEL_WRAPPERS.build(
            wrapper_cfg, default_args=dict(module=model, device_id=device_id))
        ow = build_optim_wrapper(wrapped, cfg.optim_wrapper)
        ow.initialize_count_status(wrapped, 0, 10**9)
    except torch.OutOfMemoryError as e:
        row.update(status='OOM', error=str(e).split('\n')[0][:300])
    else:
        batches = _batches(cfg)
        _measure(row, lambda: wrapped.train_step(next(batches), ow), args.iters, device)
    finally:
        if own_group:
            dist.destroy_process_group()
    res['rows'].append(row)
    print(json.dumps(row))


def main(argv=None) -> int:
    args = parse_args(argv)
    device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    if device.type != 'cuda' and not args.allow_cpu:
        print('benchmarks/sapiens_memory.py measures GPU memory and needs CUDA; skipped '
              '(--tiny --allow-cpu runs the code path on the CPU)')
        return 0
    from mmengine.registry import DefaultScope

    import keypose_ext  # noqa: F401  (registers the components)
    from keypose_ext.testing.sapiens_trace import build_sapiens_mae, trace_to_file
    from keypose_ext.testing.synthetic_coco import make_synthetic_coco
    from keypose_ext.utils import sapiens_torchscript as ts_utils
    from keypose_ext.utils.io import atomic_write
    from keypose_ext.utils.sapiens_archs import resolve_sapiens_arch
    DefaultScope.get_instance(f'sapiens_memory_{time.time()}', scope_name='mmpose')
    tmp = tempfile.mkdtemp(prefix='sapiens_mem_')
    arch_name, arch = resolve_sapiens_arch(TINY if args.tiny else args.arch)
    arch_name = 'tiny' if args.tiny else arch_name
    res = dict(
        date=datetime.datetime.now().isoformat(timespec='seconds'),
        arch=arch_name,
        torch=torch.__version__,
        device=str(device),
        batch_size=args.batch_size,
        input_hw=[384, 288],
        rows=[])
    t0 = time.time()
    path = args.checkpoint
    if path is None:
        path = trace_to_file(
            build_sapiens_mae(arch, 1024 if not args.tiny else 64),
            osp.join(tmp, 'sapiens_random_torchscript.pt2'),
            1024 if not args.tiny else 64,
            device=str(device))
        res['trace_s'] = round(time.time() - t0, 1)
    t0 = time.time()
    ts = ts_utils.load_torchscript_file(path)
    file_sd = ts.state_dict()
    info = ts_utils.inspect_encoder(path, ts, file_sd, arch_name, dict(arch, patch_size=16))
    enc_sd, _ = ts_utils.encoder_state_dict(file_sd, info)
    res['load_s'] = round(time.time() - t0, 1)
    if device.type == 'cuda':
        torch.cuda.empty_cache()
        total = torch.cuda.get_device_properties(device).total_memory
        res.update(
            gpu=torch.cuda.get_device_name(device),
            limit_gib=args.limit_gib,
            cuda_context_gib=round(_context_bytes(device) / GiB, 3))
        torch.cuda.set_per_process_memory_fraction(min(1.0, args.limit_gib * GiB / total), device)
    data_root = osp.join(tmp, 'coco')
    make_synthetic_coco(data_root, dict(train=8), image_size=(320, 240))
    _single_device_routes(args, res, enc_sd, data_root, device)
    if 'full_offload' in args.routes:
        _offload_route(args, res, enc_sd, data_root, device)
    context = res.get('cuda_context_gib') or 0
    for r in res['rows']:
        r.update(arch=arch_name, batch_size=args.batch_size, input_hw=[384, 288])
        if 'max_reserved_gib' in r:
            r['fits_card'] = r['max_reserved_gib'] + context <= args.limit_gib
    print('\n| route | phase | status | estimate (GiB, incl. context) | max allocated | '
          'max reserved | + context | s/iter |')
    print('|---|---|---|---|---|---|---|---|')
    for r in res['rows']:
        reserved = r.get('max_reserved_gib')
        print(f'| {r["route"]} | {r["phase"]} | {r["status"]} | {r.get("estimate_total_gib")}'
              f' | {r.get("max_allocated_gib", "")} | {reserved or ""} | '
              f'{round(reserved + context, 3) if reserved else ""} | '
              f'{r.get("s_per_iter") or ""} |')
    if args.out:
        with atomic_write(args.out, 'w') as f:
            json.dump(res, f, indent=1)
        print(f'results: {args.out}')
    expected = {'full'}  # does not fit a 4 GB card by design
    bad = [
        r for r in res['rows']
        if r['route'] not in expected and not r['status'].startswith(('ok', 'skipped'))
    ]
    return 1 if bad else 0


if __name__ == '__main__':
    sys.exit(main())

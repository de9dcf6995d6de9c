"""Check the GPU, data and weights for Sapiens fine-tuning, and say what fits.

    python tools/check_env.py [--config configs/sapiens/stage1_gtx1650.py]
                              [--gpu-mem-gib 4] [--json]

Reports the GPU (name, memory, compute capability, fp16/bf16 support), the estimated
peak memory of phase 1 (frozen backbone) and phase 2 (fine-tuning) for the config's
batch size, input size and phase-2 strategy, and the settings (batch, accumulation,
resolution, trainable blocks) that fit. ``--gpu-mem-gib`` evaluates a GPU size
without having the GPU. Also checks the COCO folders and the pretrain file of the
config. Exit status 1 when the config's settings do not fit the GPU.
"""
import argparse
import json
import os
import os.path as osp
import sys

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '..'))

# configs with another input size, for suggestions that change the resolution
RESOLUTION_CONFIGS = {(512, 384): 'configs/sapiens/stage1_a100.py',
                      (384, 288): 'configs/sapiens/stage1_gtx1650.py',
                      (320, 240): 'configs/sapiens/stage1_minimal.py'}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__)
    p.add_argument('--config', default='configs/sapiens/stage1_gtx1650.py')
    p.add_argument('--gpu-mem-gib', type=float,
                   help='evaluate a GPU with this much memory instead of the detected one')
    p.add_argument('--json', action='store_true', help='print one JSON object')
    return p.parse_args(argv)


def gpu_info():
    import torch
    info = dict(torch=torch.__version__, cuda_available=torch.cuda.is_available())
    if info['cuda_available']:
        dev = torch.cuda.current_device()
        prop = torch.cuda.get_device_properties(dev)
        free, total = torch.cuda.mem_get_info(dev)
        info.update(name=prop.name, total_bytes=int(total), free_bytes=int(free),
                    capability=f'{prop.major}.{prop.minor}', cuda=torch.version.cuda,
                    fp16=(prop.major, prop.minor) >= (5, 3),
                    fp16_tensor_cores=prop.major >= 7 and 'GTX 16' not in prop.name,
                    bf16=bool(torch.cuda.is_bf16_supported()))
    return info


def config_settings(cfg) -> dict:
    from keypose_ext.models.backbones.sapiens_torchscript_backbone import \
        resolve_sapiens_arch
    bb = cfg.model.backbone
    if bb.get('type') != 'SapiensTorchScriptBackbone':
        raise ValueError(f'{cfg.filename}: model.backbone.type is {bb.get("type")!r}; '
                         'check_env estimates SapiensTorchScriptBackbone configs')
    name, arch = resolve_sapiens_arch(bb.get('arch', 'sapiens_1b'))
    hook = next((h for h in cfg.get('custom_hooks', [])
                 if h.get('type') == 'SapiensPhaseSwitchHook'), None)
    phase2 = dict(hook.get('phase2', {})) if hook else {}
    fdtype = bb.get('frozen_dtype')
    return dict(
        arch_name=name, arch=arch, input_hw=tuple(bb.get('img_size', (384, 288))),
        batch_size=int(cfg.train_dataloader.batch_size),
        accumulative_counts=int(cfg.optim_wrapper.get('accumulative_counts', 1)),
        frozen_dtype_bytes=4 if fdtype in (None, 'float32', 'fp32') else 2,
        with_cp=bool(bb.get('with_cp', False)),
        switch_epoch=hook.get('switch_epoch', 10) if hook else None,
        phase2_trainable_layers=int(phase2.get('trainable_layers',
                                               bb.get('trainable_layers', -1))),
        phase2_with_cp=bool(phase2.get('with_cp', bb.get('with_cp', False))),
        pretrained=bb.get('checkpoint'),
        data=[(d.dataset.get('data_root') or '', d.dataset.ann_file,
               d.dataset.data_prefix.get('img', ''))
              for d in (cfg.train_dataloader, cfg.val_dataloader)])


def check_data(settings) -> list:
    lines = []
    for root, ann, img in settings['data']:
        ann_p, img_p = osp.join(root, ann), osp.join(root, img)
        n = sum(1 for e in os.scandir(img_p) if e.name.endswith('.jpg')) \
            if osp.isdir(img_p) else 0
        ok = osp.isfile(ann_p) and n > 0
        found = 'found' if osp.isfile(ann_p) else 'absent'
        lines.append(f'{"ok " if ok else "MISSING"} {ann_p} ({found}), {img_p}: {n} images')
    if any(line.startswith('MISSING') for line in lines):
        lines.append('fix: python tools/download_coco.py --data-root data/coco')
    return lines


def check_pretrained(path) -> str:
    if not path:
        return 'pretrained: none in the config (random init)'
    if not osp.isfile(path):
        return (f'MISSING pretrained {path}; fix: python tools/download_pretrained.py '
                '--arch 1b')
    from keypose_ext.models.backbones.sapiens_torchscript_backbone import \
        detect_checkpoint_format
    kind = detect_checkpoint_format(path)
    tag = 'ok ' if kind == 'torchscript' else 'BAD'
    return f'{tag} pretrained {path}: {kind}, {osp.getsize(path) / 1e9:.2f} GB'


def main(argv=None) -> int:
    args = parse_args(argv)
    from mmengine.config import Config

    from keypose_ext.utils import sapiens_memory_estimate as mem
    if not osp.isfile(args.config):
        print(f'error: config {args.config!r} not found', file=sys.stderr)
        return 2
    cfg = Config.fromfile(args.config)
    try:
        s = config_settings(cfg)
    except ValueError as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    gpu = gpu_info()
    if args.gpu_mem_gib:
        total = int(args.gpu_mem_gib * mem.GiB)
        gpu_label = f'a {args.gpu_mem_gib:g} GiB GPU (--gpu-mem-gib)'
    elif gpu['cuda_available']:
        total = gpu['total_bytes']
        gpu_label = gpu['name']
    else:
        total = None
        gpu_label = 'no CUDA GPU'
    budget = mem.allocator_budget(total) if total else None

    phases = {}
    if s['switch_epoch'] != 0:
        phases['phase 1 (frozen backbone)'] = mem.estimate_phase_memory(
            s['arch'], s['input_hw'], s['batch_size'], 0, s['frozen_dtype_bytes'],
            with_cp=s['with_cp'])
    phases['phase 2 (fine-tuning)'] = mem.estimate_phase_memory(
        s['arch'], s['input_hw'], s['batch_size'], s['phase2_trainable_layers'],
        s['frozen_dtype_bytes'], with_cp=s['phase2_with_cp'])
    fits = {k: (budget is None or v['total'] <= budget) for k, v in phases.items()}
    effective = s['batch_size'] * s['accumulative_counts']
    suggestions = []
    if total:
        for sug in mem.suggest_settings(s['arch'], total, effective_batch=effective,
                                        resolutions=list(RESOLUTION_CONFIGS),
                                        frozen_dtype_bytes=s['frozen_dtype_bytes']):
            sug['config'] = RESOLUTION_CONFIGS[tuple(sug['input_hw'])]
            sug['cfg_options'] = (
                f'train_dataloader.batch_size={sug["batch_size"]} '
                f'optim_wrapper.accumulative_counts={sug["accumulative_counts"]} '
                f'custom_hooks.0.phase2.trainable_layers={sug["trainable_layers"]} '
                'custom_hooks.0.phase2.with_cp=True'
                + (' model.backbone.frozen_dtype=float16'
                   if s['frozen_dtype_bytes'] == 2 else ''))
            suggestions.append(sug)
    report = dict(gpu=gpu, evaluated_for=gpu_label, allocator_budget_bytes=budget,
                  config=args.config,
                  settings={k: v for k, v in s.items() if k not in ('data', 'arch')},
                  phases={k: v['total'] for k, v in phases.items()}, fits=fits,
                  suggestions=suggestions, data=check_data(s),
                  pretrained=check_pretrained(s['pretrained']))
    if args.json:
        print(json.dumps(report, indent=1, default=str))
        return 0 if all(fits.values()) else 1

    gb = mem.format_bytes
    print(f'torch {gpu["torch"]}')
    if gpu['cuda_available']:
        print(f'GPU: {gpu["name"]} (compute {gpu["capability"]}, CUDA {gpu["cuda"]}), '
              f'{gb(gpu["total_bytes"])} total, {gb(gpu["free_bytes"])} free; '
              f'fp16 {"yes" if gpu["fp16"] else "no"}, bf16 {"yes" if gpu["bf16"] else "no"}'
              f' -> AMP dtype {"bfloat16 or float16" if gpu["bf16"] else "float16"}')
    else:
        print('GPU: none detected (CUDA not available); estimates below'
              + (f' are for {gpu_label}' if args.gpu_mem_gib else
                 '; pass --gpu-mem-gib 4 to evaluate a 4 GB GPU'))
    print(f'config {args.config}: {s["arch_name"]}, input {s["input_hw"][0]}x'
          f'{s["input_hw"][1]}, batch {s["batch_size"]} x {s["accumulative_counts"]} '
          f'accumulation (= {effective}), phase 2 trainable_layers='
          f'{s["phase2_trainable_layers"]} with_cp={s["phase2_with_cp"]}')
    if budget:
        print(f'memory PyTorch can use on {gpu_label}: {gb(budget)} '
              f'(total minus ~{gb(mem.CUDA_CONTEXT_BYTES)} CUDA context and a margin)')
    for name, est in phases.items():
        verdict = '' if budget is None else ('fits' if fits[name] else 'DOES NOT FIT')
        print(f'  {name}: ~{gb(est["total"])} peak {verdict}')
        for k, v in est.items():
            if k not in ('total', 'params_frozen', 'params_trainable'):
                print(f'      {k:28s} {gb(v)}')
    if suggestions:
        print(f'settings that fit {gpu_label} (effective batch {effective}), best first:')
        for sug in suggestions[:6]:
            print(f'  {sug["input_hw"][0]}x{sug["input_hw"][1]} batch {sug["batch_size"]} x '
                  f'{sug["accumulative_counts"]}, phase 2 trains '
                  f'{"all" if sug["trainable_layers"] < 0 else sug["trainable_layers"]} '
                  f'block(s): ~{gb(sug["phase1_bytes"])} / ~{gb(sug["phase2_bytes"])}\n'
                  f'      python tools/train.py {sug["config"]} --cfg-options '
                  f'{sug["cfg_options"]}')
    elif total:
        print(f'nothing fits {gpu_label} even at batch 1 with a frozen backbone')
    print('\n'.join(['data:'] + ['  ' + line for line in report['data']]))
    print(report['pretrained'])
    return 0 if all(fits.values()) else 1


if __name__ == '__main__':
    sys.exit(main())

"""Check the GPU, data and weights for Sapiens fine-tuning, and say which route and batch fit.

    python tools/check_env.py [--config configs/sapiens/stage1_gtx1650.py]
                              [--gpu-mem-gib 4] [--measured FILE] [--json]

Reports the GPU (name, memory, compute capability, fp16/bf16 support), the estimated
memory of the config's phases (keypose_ext/utils/sapiens_memory_estimate.py, fed by the
config: backbone, head, batch, accumulation, AMP, phase-2 route, FSDP offload), and for
each phase-2 route (LoRA adapters, last blocks, full fine-tuning with FSDP CPU offload,
full on the GPU) the largest batch that fits, with the estimate and, when
``benchmarks/results/sapiens_memory.json`` (benchmarks/sapiens_memory.py) holds a
measurement of that route and batch, the measured peak. ``--gpu-mem-gib`` evaluates a
GPU size without having the GPU. Also checks the COCO folders and the pretrain file of
the config. Exit status 1 when the config's own settings do not fit the GPU.
"""
import argparse
import json
import os
import os.path as osp
import sys

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)
# albumentations (imported by mmpose) otherwise asks PyPI for updates at import
os.environ.setdefault('NO_ALBUMENTATIONS_UPDATE', '1')

MEASURED = osp.join(ROOT, 'benchmarks', 'results', 'sapiens_memory.json')
ROUTE_CONFIGS = {
    'lora': 'configs/sapiens/stage1_gtx1650.py',
    'last_blocks': 'configs/sapiens/td-hm_sapiens-1b-last2_1xb2-110e_coco-384x288.py',
    'full_offload': 'configs/sapiens/td-hm_sapiens-1b-fsdp-offload_1xb2-100e_coco-384x288.py',
    'full': 'configs/sapiens/td-hm_sapiens-1b_1xb32-110e_coco-512x384.py'
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split('\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__)
    p.add_argument('--config', default='configs/sapiens/stage1_gtx1650.py')
    p.add_argument(
        '--gpu-mem-gib',
        type=float,
        help='evaluate a GPU with this much memory instead of the detected one')
    p.add_argument(
        '--measured',
        default=MEASURED,
        help='results JSON of benchmarks/sapiens_memory.py (used when present)')
    p.add_argument('--json', action='store_true', help='print one JSON object')
    return p.parse_args(argv)


def gpu_info():
    import torch
    info = dict(torch=torch.__version__, cuda_available=torch.cuda.is_available())
    if info['cuda_available']:
        dev = torch.cuda.current_device()
        prop = torch.cuda.get_device_properties(dev)
        free, total = torch.cuda.mem_get_info(dev)
        info.update(
            name=prop.name,
            total_bytes=int(total),
            free_bytes=int(free),
            capability=f'{prop.major}.{prop.minor}',
            cuda=torch.version.cuda,
            fp16=(prop.major, prop.minor) >= (5, 3),
            bf16=bool(torch.cuda.is_bf16_supported()))
    return info


def load_measured(path):
    """Rows of a benchmarks/sapiens_memory.py results file, or [] when absent."""
    if not path or not osp.isfile(path):
        return []
    from keypose_ext.utils.io import load_json
    res = load_json(path, 'Sapiens memory results', 'rerun python benchmarks/sapiens_memory.py')
    return [
        dict(
            r,
            gpu=res.get('gpu'),
            limit_gib=res.get('limit_gib'),
            cuda_context_gib=res.get('cuda_context_gib')) for r in res.get('rows', [])
    ]


def find_measured(rows, plan, route, batch_size, phase):
    for r in rows:
        if (r.get('route') == route and r.get('phase') == phase
                and r.get('batch_size') == batch_size
                and tuple(r.get('input_hw', ())) == tuple(plan['input_hw'])
                and r.get('arch') == plan['arch_name']):
            return r
    return None


def measured_text(r) -> str:
    if r is None:
        return ''
    if r.get('status') != 'ok':
        return f'; measured: {r.get("status")} under a {r.get("limit_gib")} GiB cap'
    total = r['max_reserved_gib'] + (r.get('cuda_context_gib') or 0)
    return (f'; measured {r["max_reserved_gib"]:.2f} GiB reserved + '
            f'{r.get("cuda_context_gib") or 0:.2f} context = {total:.2f} GiB '
            f'({r.get("gpu")}, {r.get("s_per_iter")} s/iter)')


def check_data(cfg) -> list:
    lines = []
    for d in (cfg.train_dataloader, cfg.val_dataloader):
        root = d.dataset.get('data_root') or ''
        ann_p = osp.join(root, d.dataset.ann_file)
        img_p = osp.join(root, d.dataset.data_prefix.get('img', ''))
        n = sum(1 for e in os.scandir(img_p) if e.name.endswith('.jpg')) \
            if osp.isdir(img_p) else 0
        ok = osp.isfile(ann_p) and n > 0
        found = 'found' if osp.isfile(ann_p) else 'absent'
        lines.append(f'{"ok " if ok else "MISSING"} {ann_p} ({found}), {img_p}: {n} images')
    if any(line.startswith('MISSING') for line in lines):
        lines.append('fix: python tools/download_coco.py --data-root data/coco')
    return lines


def check_pretrained(path, arch_name) -> str:
    if not path:
        return 'pretrained: none in the config (random init or load_from)'
    if not osp.isfile(path):
        return (f'MISSING pretrained {path}; fix: python tools/download_pretrained.py '
                f'--arch {arch_name.replace("sapiens_", "")}')
    from keypose_ext.utils.sapiens_torchscript import detect_checkpoint_format
    kind = detect_checkpoint_format(path)
    tag = 'ok ' if kind == 'torchscript' else 'BAD'
    return f'{tag} pretrained {path}: {kind}, {osp.getsize(path) / 1e9:.2f} GB'


def main(argv=None) -> int:
    args = parse_args(argv)
    from keypose_ext.utils import sapiens_memory_estimate as mem
    from keypose_ext.utils.cli import load_config
    from keypose_ext.utils.errors import KeyposeUserError
    try:
        cfg = load_config(args.config)
        plan = mem.plan_from_config(cfg)
        measured = load_measured(args.measured)
    except (KeyposeUserError, FileNotFoundError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    gpu = gpu_info()
    if args.gpu_mem_gib:
        total = int(args.gpu_mem_gib * mem.GiB)
        gpu_label = f'a {args.gpu_mem_gib:g} GiB GPU (--gpu-mem-gib)'
    elif gpu['cuda_available']:
        total, gpu_label = gpu['total_bytes'], gpu['name']
    else:
        total, gpu_label = None, 'no CUDA GPU'
    budget = mem.gpu_budget(total) if total else None
    route = mem.route_of_plan(plan)
    phases = mem.estimate_plan(plan)
    fits = {k: budget is None or v['total'] <= budget for k, v in phases.items()}
    routes = mem.fitting_settings(plan, total) if total else []
    for r in routes:
        r['config'] = ROUTE_CONFIGS[r['route']]
        if r['batch_size']:
            r['measured'] = {
                ph: find_measured(measured, plan, r['route'], r['batch_size'], ph)
                for ph in ('phase 1', 'phase 2')
            }
    own_measured = {k: find_measured(measured, plan, route, plan['batch_size'], k) for k in phases}
    report = dict(
        gpu=gpu,
        evaluated_for=gpu_label,
        budget_bytes=budget,
        config=args.config,
        route=route,
        settings={
            k: v
            for k, v in plan.items() if k != 'arch'
        },
        phases={
            k: v['total']
            for k, v in phases.items()
        },
        host_bytes=phases['phase 2']['host_bytes'],
        fits=fits,
        measured=own_measured,
        routes=routes,
        data=check_data(cfg),
        pretrained=check_pretrained(cfg.model.backbone.get('checkpoint'), plan['arch_name']))
    if args.json:
        print(json.dumps(report, indent=1, default=str))
        return 0 if all(fits.values()) else 1

    gb = mem.format_bytes
    print(f'torch {gpu["torch"]}')
    if gpu['cuda_available']:
        print(f'GPU: {gpu["name"]} (compute {gpu["capability"]}, CUDA {gpu["cuda"]}), '
              f'{gb(gpu["total_bytes"])} total, {gb(gpu["free_bytes"])} free; '
              f'fp16 {"yes" if gpu["fp16"] else "no"}, bf16 {"yes" if gpu["bf16"] else "no"}')
    else:
        print('GPU: none detected (CUDA not available); estimates below' +
              (f' are for {gpu_label}' if args.
               gpu_mem_gib else '; pass --gpu-mem-gib 4 to evaluate a 4 GB GPU'))
    hw = plan['input_hw']
    print(f'config {args.config}: {plan["arch_name"]}, input {hw[0]}x{hw[1]}, batch '
          f'{plan["batch_size"]} x {plan["accumulative_counts"]} accumulation, phase-2 '
          f'route {route!r}')
    if budget:
        print(f'{gpu_label}: estimates must stay under {gb(budget)} (total minus a '
              f'{gb(mem.SAFETY_BYTES)} margin; the estimates include the CUDA context)')
    for name, est in phases.items():
        verdict = '' if budget is None else ('fits' if fits[name] else 'DOES NOT FIT')
        print(f'  {name}: ~{gb(est["total"])} {verdict}{measured_text(own_measured[name])}')
        for k, v in est.items():
            if k not in ('total', 'allocated', 'reserved', 'params_frozen', 'params_trainable',
                         'host_bytes') and v:
                print(f'      {k:32s} {gb(v)}')
    if phases['phase 2']['host_bytes']:
        print(f'  host memory for the offloaded weights, grads and AdamW state: '
              f'~{gb(phases["phase 2"]["host_bytes"])} (plus the process and data workers)')
    if routes:
        effective = plan['batch_size'] * plan['accumulative_counts']
        print(f'phase-2 routes on {gpu_label} (effective batch {effective}):')
        for r in routes:
            if not r['batch_size']:
                print(f'  {r["route"]:13s} does not fit, even at batch 1')
                continue
            est = ' / '.join(f'{k} ~{gb(r[k + " total"])}{measured_text(r["measured"][k])}'
                             for k in ('phase 1', 'phase 2') if k + ' total' in r)
            host = f', host ~{gb(r["host_bytes"])}' if r['host_bytes'] else ''
            opts = (f'train_dataloader.batch_size={r["batch_size"]} '
                    f'optim_wrapper.accumulative_counts={r["accumulative_counts"]}')
            run = (f'python tools/train.py {r["config"]} --cfg-options {opts}'
                   if r['route'] != 'full_offload' else
                   f'after phase 1 of {ROUTE_CONFIGS["lora"]}: tools/dist_train.sh '
                   f'{r["config"]} 1 --cfg-options load_from=<epoch_10_merged.pth> {opts}')
            print(f'  {r["route"]:13s} batch {r["batch_size"]} x {r["accumulative_counts"]}: '
                  f'{est}{host}\n      {run}')
    print('\n'.join(['data:'] + ['  ' + line for line in report['data']]))
    print(report['pretrained'])
    return 0 if all(fits.values()) else 1


if __name__ == '__main__':
    sys.exit(main())

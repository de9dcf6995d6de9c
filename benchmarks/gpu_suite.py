"""The GPU suite: checks the GPU, then runs five measurements, each with its own time limit
and a results line, within an overall budget (default 470 s, under 8 minutes on one H200).

    python benchmarks/gpu_suite.py [--out work_dirs/gpu_suite] [--budget-s 470]
                                   [--steps a,b,c,d,e]
    python benchmarks/gpu_suite.py --cpu-smoke --out /tmp/suite   # tiny sizes, no GPU
    python benchmarks/gpu_suite.py --cpu-smoke --children ...     # steps as child processes

Steps (each a child process with a time limit; a step that runs out is killed and
reported as ``timeout``, and the next one starts):

  a  bottle seed config end to end:
     configs/bottle/td-depthreg_res18_1xb16-1000e_bottle-224x224.py through the Runner
     (DeviceResidentTrainLoop fast path) on a 252-frame synthetic clip at 224x224,
     1000 epochs, batch 16, Adam 1e-4: wall time, final loss (goal < 1e-4), images/s
  b  the seed's plain PyTorch loop (torchvision ResNet-18 + Linear(512, 27), MSE, Adam)
     on the same frames, resident on the same GPU: images/s as written (fp32) and with
     the fast path's settings (bf16 autocast, channels-last); ratio a / b (goal >= 0.95)
  c  tools/dist_train.sh with 2 processes (the 2xGPU DDP config) if 2 GPUs are present
  d  Sapiens-1B memory: benchmarks/make_sapiens_torchscript.py, then
     benchmarks/sapiens_memory.py (4 GiB cap, configs/sapiens/stage1_gtx1650.py)
  e  CAPE: benchmarks/cape_throughput.py (ResNet-50, 256x256): training and validation
     episodes/s, decoding time vs keypoint count

Writes ``<out>/gpu_suite.json`` (every figure) and ``<out>/gpu_suite.md`` (the table);
exits 0 when every step ran (``ok`` or ``skipped``). ``--cpu-smoke`` runs every step
with tiny sizes on the CPU, in this process (the imports are paid once) except the GPU
check: tests/test_gpu_suite.py runs it to prove the suite works end to end.
"""
import argparse
import json
import math
import os
import os.path as osp
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)
# albumentations (imported by mmpose) asks PyPI for updates at import: never wait on it.
os.environ.setdefault('NO_ALBUMENTATIONS_UPDATE', '1')

STEPS = dict(
    a=('bottle_e2e', 240, 'bottle seed config, 1000 epochs through the Runner'),
    b=('plain_loop', 100, 'seed 000 plain PyTorch loop on the same GPU'),
    c=('ddp_2gpu', 150, 'tools/dist_train.sh, 2 processes'),
    d=('sapiens_1b_memory', 270, 'Sapiens-1B memory under a 4 GiB cap'),
    e=('cape_throughput', 120, 'CAPE ResNet-50 256x256 episodes/s, decoding vs K'),
)
ORDER = 'abedc'  # most important first, in case the budget runs out
BOTTLE_CONFIG = 'configs/bottle/td-depthreg_res18_1xb16-1000e_bottle-224x224.py'
DDP_CONFIG = 'configs/bottle/td-depthreg_res18_2xb64-1000e_bottle-224x224.py'
SAPIENS_CONFIG = 'configs/sapiens/stage1_gtx1650.py'
GOAL_LOSS, GOAL_RATIO = 1e-4, 0.95

# Full sizes and --cpu-smoke sizes.
SIZES = dict(
    full=dict(
        frames=252,
        frame_size=224,
        input=224,
        epochs=1000,
        batch=16,
        plain_epochs=150,
        plain_path_epochs=20,
        ddp_epochs=20),
    smoke=dict(
        frames=8,
        frame_size=64,
        input=32,
        epochs=3,
        batch=4,
        plain_epochs=3,
        plain_path_epochs=2,
        ddp_epochs=1),
)


# --------------------------------------------------------------------------- helpers
def _sizes(ctx):
    return SIZES['smoke' if ctx['cpu_smoke'] else 'full']


def _device(ctx):
    import torch
    return torch.device('cpu' if ctx['cpu_smoke'] else 'cuda')


def _sync(device):
    import torch
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def _bottle_data(ctx):
    """The synthetic clip (made once per suite run, shared by steps a, b, c)."""
    from keypose_ext.testing.synthetic_bottle import make_bottle_dataset
    s = _sizes(ctx)
    root = osp.join(ctx['work'], 'bottle_data')
    if not osp.isfile(osp.join(root, 'annotations.json')):
        make_bottle_dataset(
            root, num_frames=s['frames'], size=(s['frame_size'], s['frame_size']), seed=0)
    return root


def set_input_size(cfg, size):
    """A bottle config's model input (w, h) in its train and val pipelines and codec."""
    for loader in (cfg.train_dataloader, cfg.val_dataloader):
        for t in loader.dataset.pipeline:
            if t.type == 'TopdownAffine':
                t.input_size = size
            if t.type == 'GenerateTarget':
                t.encoder.input_size = size
    cfg.model.head.decoder.input_size = size


def _bottle_cfg(ctx, config, work_dir):
    """The bottle config on the synthetic clip, shrunk in --cpu-smoke."""
    from mmengine.config import Config
    s = _sizes(ctx)
    data = _bottle_data(ctx)
    cfg = Config.fromfile(osp.join(ROOT, config))
    opts = {'work_dir': work_dir, 'randomness': dict(seed=0)}
    for split in ('train', 'val', 'test'):
        opts[f'{split}_dataloader.dataset.data_root'] = data
    if ctx['cpu_smoke']:
        set_input_size(cfg, (s['input'], s['input']))
        opts.update({
            'train_cfg.max_epochs': s['epochs'],
            'train_cfg.fast_path': True,
            'train_dataloader.batch_size': s['batch'],
            'default_hooks.logger.interval': 1,
            'default_hooks.checkpoint.save_best': None
        })
    cfg.merge_from_dict(opts)
    return cfg


def epoch_timer():
    """A hook timing each training epoch (hooks and all, no validation, no saving)."""
    from mmengine.hooks import Hook

    class EpochTimer(Hook):
        priority = 'VERY_HIGH'  # before the checkpoint hook saves, after nothing else

        def __init__(self):
            self.seconds, self._t = [], None

        def before_train_epoch(self, runner):
            self._t = time.perf_counter()

        def after_train_epoch(self, runner):
            # The fast path has read the epoch's losses back: the GPU is done.
            self.seconds.append(time.perf_counter() - self._t)

    return EpochTimer()


def build_runner(cfg):
    try:
        from keypose_ext.utils.cli import build_runner
    except ImportError:  # an older checkout: mmengine's Runner
        from mmengine.runner import Runner
        return Runner.from_cfg(cfg)
    return build_runner(cfg)


# ----------------------------------------------------------------------------- steps
def step_gpu(ctx):
    """The GPU check: CUDA, device count and names, torch/cuDNN versions."""
    import torch
    info = dict(torch=torch.__version__, cuda_available=torch.cuda.is_available())
    if not info['cuda_available']:
        if ctx['cpu_smoke']:
            return dict(info, status='ok', note='cpu-smoke: no GPU needed')
        return dict(info, status='fail', note='no CUDA GPU visible: the suite needs one')
    info.update(
        device_count=torch.cuda.device_count(),
        cudnn=torch.backends.cudnn.version(),
        gpus=[torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
        memory_gib=round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1))
    x = torch.randn(1024, 1024, device='cuda')
    info['matmul_ok'] = bool(torch.isfinite(x @ x).all())
    return dict(info, status='ok' if info['matmul_ok'] else 'fail')


def median_epoch_images_per_s(frames, seconds):
    """Steady state: the median epoch, without the first (packing, cudnn autotune)."""
    return round(frames / statistics.median(seconds[1:] or seconds), 1)


def _plain_path(ctx):
    """The same config through the Runner's plain path (``train_cfg.fast_path=False``:
    DataLoader, per-batch preprocessing and host copies, the loss read every iteration)
    for a few epochs, no validation: the baseline of the fast path's gain."""
    s = _sizes(ctx)
    cfg = _bottle_cfg(ctx, BOTTLE_CONFIG, osp.join(ctx['work'], 'a_bottle_plain_path'))
    cfg.merge_from_dict({
        'train_cfg.fast_path': False,
        'train_cfg.max_epochs': s['plain_path_epochs'],
        'train_cfg.val_interval': 10**6,
        'experiment_name': 'gpu_suite_plain_path',  # its own message hub
    })
    runner = build_runner(cfg)
    timer = epoch_timer()
    runner.register_hook(timer)
    runner.train()
    return dict(
        epochs=len(timer.seconds),
        images_per_s_median_epoch=median_epoch_images_per_s(s['frames'], timer.seconds))


def step_bottle_e2e(ctx):
    """(a) The seed config end to end through the Runner (fast path), then a few epochs of
    the Runner's plain path for the fast path's gain."""
    import numpy as np
    s = _sizes(ctx)
    t0 = time.perf_counter()
    cfg = _bottle_cfg(ctx, BOTTLE_CONFIG, osp.join(ctx['work'], 'a_bottle'))
    cfg.experiment_name = 'gpu_suite_bottle_e2e'
    runner = build_runner(cfg)
    timer = epoch_timer()
    runner.register_hook(timer)
    runner.train()
    wall = time.perf_counter() - t0
    loop = runner.train_loop
    hub = runner.message_hub
    losses = np.asarray(hub.get_scalar('train/loss').data[0])
    iters_per_epoch = len(runner.train_dataloader)
    images = s['frames'] * len(timer.seconds)  # every frame once per epoch
    train_s = sum(timer.seconds)
    val = {k[4:]: float(v.current()) for k, v in hub.log_scalars.items() if k.startswith('val/')}
    result = dict(
        status='ok',
        wall_s=round(wall, 1),
        train_s=round(train_s, 1),
        epochs=len(timer.seconds),
        iters=int(len(losses)),
        iters_per_epoch=iters_per_epoch,
        images_per_s=round(images / train_s, 1),
        images_per_s_median_epoch=median_epoch_images_per_s(s['frames'], timer.seconds),
        final_loss=float(losses[-1]),
        final_epoch_mean_loss=float(losses[-iters_per_epoch:].mean()),
        fast_path=bool(loop.fast_path_active),
        fast_path_reason=loop.fast_path_reason,
        host_reads=getattr(loop, 'num_host_reads', None),
        val=val)
    result['goal_final_loss_lt_1e-4'] = result['final_loss'] < GOAL_LOSS
    result['plain_path'] = _plain_path(ctx)
    result['fast_path_gain'] = round(
        result['images_per_s_median_epoch'] / result['plain_path']['images_per_s_median_epoch'], 2)
    return result


def seed_model():
    """Seed 000's model: torchvision ResNet-18 with a Linear(512, 27) head."""
    import torch
    import torchvision

    from keypose_ext.datasets.bottle_metainfo import NUM_KEYPOINTS
    model = torchvision.models.resnet18(weights=None)
    model.fc = torch.nn.Linear(model.fc.in_features, NUM_KEYPOINTS * 3)
    return model


def seed_tensors(cfg, device):
    """The frames and targets exactly as the config trains on them (its dataset and the
    model's preprocessor): inputs (N, 3, H, W) float, normalised; targets (N, K*3)."""
    import torch
    from mmengine.dataset import pseudo_collate
    from mmpose.registry import DATASETS, MODELS
    ds = DATASETS.build(cfg.train_dataloader.dataset)
    prep = MODELS.build(cfg.model.data_preprocessor).to(device)
    data = prep(pseudo_collate([ds[i] for i in range(len(ds))]), True)
    y = torch.stack([d.gt_instance_labels.keypoint_labels[0] for d in data['data_samples']])
    return data['inputs'], y.flatten(1).to(device)


def step_plain_loop(ctx):
    """(b) The seed's loop as written (fp32) and with the fast path's settings, data on
    the GPU; images/s against (a)'s."""
    import torch
    s, device = _sizes(ctx), _device(ctx)
    cfg = _bottle_cfg(ctx, BOTTLE_CONFIG, osp.join(ctx['work'], 'b_plain'))
    x, y = seed_tensors(cfg, device)
    rows = {}
    torch.backends.cudnn.benchmark = True  # as the bottle config's env_cfg
    for name, fast in (('seed_fp32', False), ('bf16_channels_last', True)):
        if fast and device.type != 'cuda':
            continue
        torch.manual_seed(0)
        model = seed_model().to(device)
        xs = x
        if fast:
            model = model.to(memory_format=torch.channels_last)
            xs = x.to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)
        crit = torch.nn.MSELoss()
        amp = dict(device_type=device.type, dtype=torch.bfloat16, enabled=fast)
        epoch_s, losses = [], []
        for epoch in range(s['plain_epochs']):
            _sync(device)
            t = time.perf_counter()
            perm = torch.randperm(len(xs), device=device)
            for i in range(0, len(xs), s['batch']):
                idx = perm[i:i + s['batch']]
                with torch.autocast(**amp):
                    out = model(xs[idx])
                loss = crit(out.float(), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
            if (epoch + 1) % 10 == 0 or epoch + 1 == s['plain_epochs']:
                losses.append(loss.item())  # the seed's print every 10 epochs
            _sync(device)
            epoch_s.append(time.perf_counter() - t)
        steady = epoch_s[1:] or epoch_s
        rows[name] = dict(
            images_per_s=round(len(xs) * len(steady) / sum(steady), 1),
            images_per_s_median_epoch=round(len(xs) / statistics.median(steady), 1),
            epochs=s['plain_epochs'],
            final_loss=losses[-1])
    result = dict(status='ok', **rows)
    a = ctx['results'].get('bottle_e2e', {})
    if a.get('status') == 'ok':
        ref = rows.get('bf16_channels_last', rows['seed_fp32'])
        result['ratio_a_over_b'] = round(
            a['images_per_s_median_epoch'] / ref['images_per_s_median_epoch'], 3)
        result['ratio_a_over_seed_fp32'] = round(
            a['images_per_s_median_epoch'] / rows['seed_fp32']['images_per_s_median_epoch'], 3)
        result['goal_ratio_ge_0.95'] = result['ratio_a_over_b'] >= GOAL_RATIO
    return result


def _child_env():
    """This process's environment for a tool's child, with the checkout first on the path
    and the rest of ``PYTHONPATH`` kept (on the lent GPU machine it holds the kit of
    benchmarks/device/)."""
    path = os.environ.get('PYTHONPATH')
    return dict(
        os.environ, PYTHONPATH=ROOT + (os.pathsep + path if path else ''), PYTHON=sys.executable)


def _run_tool(cmd, ctx, log_name, timeout=None):
    """A tool as a subprocess (its output in ``<out>/<log_name>``); returns
    (return code or None after ``timeout``, log path)."""
    log = osp.join(ctx['out'], log_name)
    with open(log, 'w') as f:
        proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            stdout=f,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=_child_env())
        try:
            return proc.wait(timeout), log
        except subprocess.TimeoutExpired:
            _kill_group(proc.pid)
            proc.wait(10)
            return None, log


def step_ddp_2gpu(ctx):
    """(c) tools/dist_train.sh with 2 processes, when 2 GPUs are present."""
    import torch
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if n < 2:
        return dict(status='skipped', note=f'{n} GPU(s) visible; DDP needs 2')
    s = _sizes(ctx)
    data = _bottle_data(ctx)
    work = osp.join(ctx['work'], 'c_ddp')
    opts = [f'{k}_dataloader.dataset.data_root={data}' for k in ('train', 'val', 'test')]
    opts += [
        f'train_cfg.max_epochs={s["ddp_epochs"]}', 'train_cfg.val_interval=1000',
        'randomness.seed=0'
    ]
    t0 = time.perf_counter()
    cmd = ['bash', 'tools/dist_train.sh', DDP_CONFIG, '2', '--work-dir', work, '--cfg-options']
    rc, log = _run_tool(cmd + opts, ctx, 'c_ddp.log', timeout=ctx['limit_s'] - 10)
    wall = time.perf_counter() - t0
    status = 'ok' if rc == 0 else ('timeout' if rc is None else 'fail')
    result = dict(status=status, rc=rc, wall_s=round(wall, 1), epochs=s['ddp_epochs'], log=log)
    scalars = sorted(_find(work, 'scalars.json'))
    if scalars:
        lines = [json.loads(line) for line in open(scalars[-1]) if '"loss"' in line]
        if lines:
            result['final_loss'] = lines[-1]['loss']
    return result


def _find(root, name):
    for folder, _, files in os.walk(root):
        if name in files:
            yield osp.join(folder, name)


def step_sapiens_1b_memory(ctx):
    """(d) Sapiens-1B memory: benchmarks/sapiens_memory.py, which traces a random
    Sapiens-1B itself and measures each phase/route under a 4 GiB cap."""
    out = osp.join(ctx['out'], 'sapiens_memory.json')
    argv = ['--out', out]
    if ctx['cpu_smoke']:
        argv += [
            '--tiny', '--allow-cpu', '--iters', '2', '--batch-size', '1', '--routes', 'phase 1'
        ]
    if ctx['cpu_smoke'] and not ctx.get('children'):
        # In-process: this process already holds the imports (seconds, not tens).
        rc = _script('sapiens_memory').main(argv)
        log = None
    else:
        # Its own limit, a little inside the step's, so the rows printed so far are
        # still read back if it runs out.
        rc, log = _run_tool(
            [sys.executable, 'benchmarks/sapiens_memory.py'] + argv,
            ctx,
            'd_sapiens_memory.log',
            timeout=ctx['limit_s'] - 15)
    result = dict(status='ok' if rc == 0 else ('timeout' if rc is None else 'fail'), rc=rc)
    rows = []
    if osp.isfile(out):
        from keypose_ext.utils.io import load_json
        rows = load_json(out, 'sapiens_memory.py result').get('rows', [])
    elif log and osp.isfile(log):  # partial: the JSON lines it printed per row
        for line in open(log):
            if line.startswith('{'):
                try:
                    rows.append(json.loads(line))
                except ValueError:
                    pass
    keys = ('route', 'status', 'max_allocated_gib', 'max_reserved_gib', 'estimate_total_gib',
            'fits_card', 's_per_iter')
    result['phases'] = [
        dict({k: r.get(k)
              for k in keys if k in r}, name=r.get('route', r.get('name'))) for r in rows
    ]
    return result


def _script(name):
    import importlib.util
    spec = importlib.util.spec_from_file_location(name, osp.join(ROOT, 'benchmarks', f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def step_cape_throughput(ctx):
    """(e) benchmarks/cape_throughput.py on the ResNet-50 256x256 config."""
    cape = _script('cape_throughput')
    argv = ['--json', osp.join(ctx['out'], 'cape_throughput.json')]
    if ctx['cpu_smoke']:
        argv += [
            '--tiny', '--train-steps', '1', '--val-batches', '1', '--decode-reps', '1',
            '--images-per-category', '3'
        ]
    result = cape.run(cape.parse_args(argv))
    cape.print_table(result)
    return dict(
        status='ok',
        train_episodes_per_s=result['train']['episodes_per_s'],
        val_episodes_per_s=result['val']['episodes_per_s'],
        decode=result['decode'],
        input_size=result['input_size'])


def step_selftest_sleep(ctx):
    """For tests/test_gpu_suite.py: a step that outlives its limit."""
    time.sleep(float(ctx.get('sleep_s', 60)))
    return dict(status='ok')


STEP_FUNCS = dict(
    gpu_check=step_gpu,
    bottle_e2e=step_bottle_e2e,
    plain_loop=step_plain_loop,
    ddp_2gpu=step_ddp_2gpu,
    sapiens_1b_memory=step_sapiens_1b_memory,
    cape_throughput=step_cape_throughput,
    selftest_sleep=step_selftest_sleep)
LIGHT_STEPS = ('gpu_check', 'selftest_sleep')  # need torch at most, not keypose_ext
SMOKE_CHILD_STEPS = ('gpu_check', 'selftest_sleep')  # child processes even in smoke


# ------------------------------------------------------------------------ the runner
def _child(name, ctx, result_path, catch=(BaseException, )):
    """Run one step; its result (or the error) goes to ``result_path`` as JSON."""
    os.chdir(ROOT)  # the configs' and scripts' relative paths
    try:
        if name not in LIGHT_STEPS:
            from mmengine.registry import init_default_scope

            import keypose_ext  # noqa: F401
            init_default_scope('mmpose')
        result = STEP_FUNCS[name](ctx)
    except catch as e:  # reported, not raised: the suite goes on
        result = dict(
            status='error',
            error=f'{type(e).__name__}: {e}'[:2000],
            traceback=traceback.format_exc()[-4000:])
    if name in LIGHT_STEPS:  # keypose_ext not imported here (seconds): a plain write
        with open(result_path, 'w') as f:
            json.dump(result, f, indent=1, default=str)
        return
    from keypose_ext.utils.io import atomic_write  # a killed step leaves no half file
    with atomic_write(result_path, 'w') as f:
        json.dump(result, f, indent=1, default=str)


def _run_step(name, ctx, limit):
    """The step in a child process, killed (with its own children) after ``limit``.

    In ``--cpu-smoke`` the steps run in this process instead (a forked child of a
    process that has used OpenMP can deadlock, and a fresh interpreter per step would
    pay the imports again), stopped by SIGALRM at ``limit``; the GPU check still runs
    as a child process, so that machinery is exercised too.
    """
    result_path = osp.join(ctx['out'], f'{name}.json')
    if osp.exists(result_path):
        os.remove(result_path)
    ctx = dict(ctx, limit_s=limit)
    t0 = time.perf_counter()
    timed_out = False
    if ctx['cpu_smoke'] and not ctx.get('children') and name not in SMOKE_CHILD_STEPS:
        import torch
        cwd, threads = os.getcwd(), torch.get_num_threads()
        # Tiny tensors: one thread is faster, and spinning OpenMP threads on a busy
        # machine can make a step many times slower.
        torch.set_num_threads(1)
        old = signal.signal(signal.SIGALRM, _alarm)
        signal.alarm(max(1, math.ceil(limit)))
        try:
            _child(name, ctx, result_path, catch=(Exception, ))
        except _StepTimeout:
            timed_out = True
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, old)
            os.chdir(cwd)
            torch.set_num_threads(threads)
    else:
        cmd = [
            sys.executable,
            osp.abspath(__file__), '--child', name, '--ctx',
            json.dumps({
                k: v
                for k, v in ctx.items() if k != 'results'
            }), '--results',
            json.dumps(ctx['results']), '--result-path', result_path
        ]
        with open(osp.join(ctx['out'], f'{name}.log'), 'w') as log:
            proc = subprocess.Popen(
                cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            try:
                proc.wait(limit)
            except subprocess.TimeoutExpired:
                timed_out = True
                _kill_group(proc.pid)
                proc.wait(10)
    seconds = round(time.perf_counter() - t0, 1)
    if timed_out:
        result = dict(status='timeout', note=f'stopped after its {limit:.0f} s limit')
    elif osp.isfile(result_path):
        try:
            with open(result_path) as f:
                result = json.load(f)
        except ValueError as e:  # a light step killed while writing
            result = dict(status='error', error=f'unreadable result {result_path}: {e}')
    else:
        result = dict(status='error', error='the step ended without a result (crashed)')
    result.update(step=name, seconds=seconds, limit_s=round(limit))
    return result


class _StepTimeout(BaseException):
    """Raised by SIGALRM in an in-process step (not an Exception: steps catch those)."""


def _alarm(signum, frame):
    raise _StepTimeout()


def _kill_group(pid):
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _fmt(value):
    if isinstance(value, float):
        return f'{value:.3g}' if abs(value) < 1e-2 or abs(value) >= 1e4 else f'{value:.4g}'
    return str(value)


def result_line(letter, r):
    """One line per step, e.g. ``RESULT a bottle_e2e ok 143.2s final_loss=3e-05 ...``."""
    skip = {
        'step', 'seconds', 'limit_s', 'status', 'traceback', 'decode', 'phases', 'val', 'log',
        'fast_path_reason'
    }
    figures = []
    for k, v in r.items():
        if k in skip:
            continue
        if isinstance(v, dict):
            figures += [f'{k}.{kk}={_fmt(vv)}' for kk, vv in v.items()]
        else:
            figures.append(f'{k}={_fmt(v)}')
    if r.get('phases'):
        figures += [
            f'[{p["name"]}: {p.get("status")}, reserved {p.get("max_reserved_gib")} GiB, '
            f'estimate {p.get("estimate_total_gib")} GiB with context, '
            f'{p.get("s_per_iter")} s/iter]' for p in r['phases']
        ]
    if r.get('decode'):
        figures += [
            f'[K={d["num_keypoints"]}: decode {d["decode_ms"]} ms, backbone '
            f'{d["backbone_ms"]} ms, batch {d["batch"]}]' for d in r['decode']
        ]
    return (f'RESULT {letter} {r["step"]} {r["status"]} {r["seconds"]}s/{r["limit_s"]}s ' +
            ' '.join(figures))


def table(results):
    rows = ['| step | what | status | time (s) | figures |', '|---|---|---|---|---|']
    for letter, r in results:
        what = STEPS[letter][2] if letter in STEPS else 'GPU check'
        figs = result_line(letter, r).split(' ', 5)[5:] or ['']
        rows.append(f'| {letter} | {what} | {r["status"]} | {r["seconds"]} | '
                    f'{figs[0].replace("|", "/")} |')
    return '\n'.join(rows)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split('\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__)
    p.add_argument('--out', default='work_dirs/gpu_suite')
    p.add_argument('--budget-s', type=float, default=470, help='the whole suite')
    p.add_argument('--steps', default=ORDER, help='letters to run, e.g. ab')
    p.add_argument('--cpu-smoke', action='store_true', help='tiny sizes on the CPU')
    p.add_argument(
        '--children',
        action='store_true',
        help='with --cpu-smoke: every step in its own child process, as on a GPU '
        '(benchmarks/device/run_suite.sh checks the kit so)')
    p.add_argument(
        '--limit-scale',
        type=float,
        default=1.0,
        help='multiply every step limit (e.g. 0.5 on a faster machine)')
    p.add_argument('--child', help=argparse.SUPPRESS)
    p.add_argument('--ctx', help=argparse.SUPPRESS)
    p.add_argument('--results', help=argparse.SUPPRESS)
    p.add_argument('--result-path', help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:  # inside a step's child process
        ctx = dict(json.loads(args.ctx), results=json.loads(args.results))
        _child(args.child, ctx, args.result_path)
        return 0

    out = osp.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    ctx = dict(
        out=out,
        work=tempfile.mkdtemp(prefix='gpu_suite_'),
        cpu_smoke=args.cpu_smoke,
        children=args.children,
        results={})
    start = time.perf_counter()
    results = []

    def run(letter, name, limit):
        left = args.budget_s - (time.perf_counter() - start)
        if left < 5:
            r = dict(status='skipped', note='suite budget spent', step=name, seconds=0, limit_s=0)
        else:
            r = _run_step(name, ctx, min(limit * args.limit_scale, left))
        ctx['results'][name] = {k: v for k, v in r.items() if k != 'traceback'}
        results.append((letter, r))
        print(result_line(letter, r), flush=True)
        if r['status'] == 'error':
            print(r.get('traceback', ''), file=sys.stderr)
        return r

    gpu = run('gpu', 'gpu_check', 60)
    if gpu['status'] == 'ok':
        for letter in ORDER:
            if letter in args.steps:
                run(letter, *STEPS[letter][:2])
    total = round(time.perf_counter() - start, 1)
    summary = dict(
        total_s=total,
        budget_s=args.budget_s,
        cpu_smoke=args.cpu_smoke,
        steps={
            name: r
            for name, r in ((r['step'], r) for _, r in results)
        })
    from keypose_ext.utils.io import atomic_write
    with atomic_write(osp.join(out, 'gpu_suite.json'), 'w') as f:
        json.dump(summary, f, indent=1, default=str)
    md = table(results) + f'\n\nTotal {total} s of a {args.budget_s:.0f} s budget.\n'
    with atomic_write(osp.join(out, 'gpu_suite.md'), 'w') as f:
        f.write(md)
    print(md)
    ok = all(r['status'] in ('ok', 'skipped') for _, r in results)
    return 0 if ok and not math.isnan(total) else 1


if __name__ == '__main__':
    sys.exit(main())

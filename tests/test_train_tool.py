"""tools/train.py and tools/dist_train.sh end to end: --auto-scale-lr with accumulation,
SIGKILL during a checkpoint save and --resume, and two CPU processes under torchrun."""
import glob
import os
import os.path as osp
import re
import signal
import subprocess
import sys
import time

import pytest
import torch
from mmengine.config import Config

from keypose_ext.utils.safe_checkpoint_globals import mmengine_checkpoint_globals

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
BOTTLE = osp.join(ROOT, 'configs', 'bottle',
                  'td-depthreg_res18_1xb16-40e_bottle-synthetic-96x96.py')
CAPE = osp.join(ROOT, 'configs', 'cape', 'capeseq_res18_1xb8-200e_mp100-split1-1shot-256x256.py')


def _train_tool():
    import importlib.util
    spec = importlib.util.spec_from_file_location('_train_tool',
                                                  osp.join(ROOT, 'tools', 'train.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize('runner_type,ratio', [('Runner', 8 / 16), ('KeyposeRunner', 1.0)])
def test_auto_scale_lr_counts_accumulation(tmp_path, runner_type, ratio):
    """CAPE MP-100: batch 8 x accumulative_counts 2 = 16 = auto_scale_lr.base_batch_size,
    so the lr stays; mmengine's own rule (the control) halves it."""
    train = _train_tool()
    args = train.parse_args([
        CAPE, '--work-dir',
        str(tmp_path), '--auto-scale-lr', '--cfg-options', f'experiment_name=scale_{runner_type}',
        f'runner_type={runner_type}', 'visualizer.name=scale_' + runner_type
    ])
    cfg = train.merge_args(train.cli.load_config(args.config, args.cfg_options), args)
    assert cfg.optim_wrapper.accumulative_counts == 2
    assert cfg.train_dataloader.batch_size == 8 and cfg.auto_scale_lr.base_batch_size == 16
    runner = train.cli.build_runner(cfg)
    # what Runner.train() does before the param schedulers are built
    runner.optim_wrapper = runner.build_optim_wrapper(runner.optim_wrapper)
    before = [g['lr'] for g in runner.optim_wrapper.optimizer.param_groups]
    runner.scale_lr(runner.optim_wrapper, runner.auto_scale_lr)
    after = [g['lr'] for g in runner.optim_wrapper.optimizer.param_groups]
    assert after == pytest.approx([lr * ratio for lr in before])


def test_skip_nonfinite_steps_flag(tmp_path):
    train = _train_tool()
    args = train.parse_args([BOTTLE, '--work-dir', str(tmp_path), '--skip-nonfinite-steps'])
    cfg = train.merge_args(Config.fromfile(BOTTLE), args)
    assert cfg.default_hooks.non_finite_loss.action == 'skip'


# ------------------------------------------------------------------ SIGKILL + resume
def _data(tmp_path):
    from keypose_ext.testing.synthetic_bottle import make_bottle_dataset
    make_bottle_dataset(str(tmp_path / 'data'), num_frames=16, size=(96, 72), seed=5)
    return tmp_path / 'data'


def _cmd(data, work, *extra):
    # 4 batches of 4 per epoch, a checkpoint after every iteration (max_keep_ckpts=1):
    # saves are frequent, so a kill lands in one; the loop resumes mid-epoch
    return [
        sys.executable,
        osp.join(ROOT, 'tools', 'train.py'), BOTTLE, '--work-dir',
        str(work), '--no-validate', *extra, '--cfg-options',
        f'train_dataloader.dataset.data_root={data}', 'train_dataloader.batch_size=4',
        'train_cfg.type=KeyposeEpochBasedTrainLoop', 'train_cfg.max_epochs=3',
        'default_hooks.checkpoint.by_epoch=False', 'default_hooks.checkpoint.interval=1',
        'default_hooks.checkpoint.max_keep_ckpts=1', 'default_hooks.logger.interval=1',
        'log_processor.window_size=1', 'randomness.deterministic=True'
    ]


def _load(path):
    with mmengine_checkpoint_globals():
        return torch.load(path, map_location='cpu', weights_only=True)


def _losses(ckpt):
    """{iteration: loss} from the message hub history saved in a checkpoint (one entry
    per iteration, restored and continued by a resumed run)."""
    values, _ = _load(ckpt)['message_hub']['log_scalars']['train/loss'].data
    return {i + 1: float(v) for i, v in enumerate(values)}


@pytest.mark.slow
def test_sigkill_during_save_then_resume_equals_an_uninterrupted_run(tmp_path):
    data = _data(tmp_path)
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONWARNINGS='ignore')
    full = subprocess.run(
        _cmd(data, tmp_path / 'full'),
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900)
    assert full.returncode == 0, full.stderr[-3000:]
    reference = _losses(tmp_path / 'full' / 'iter_12.pth')
    assert sorted(reference) == list(range(1, 13))

    work = tmp_path / 'killed'
    proc = subprocess.Popen(
        _cmd(data, work), cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 600
        while time.time() < deadline:  # kill while iter_6 (or later) is being written
            temps = glob.glob(str(work / '.tmp_*iter_*.pth'))
            if temps and int(re.findall(r'iter_(\d+)', temps[0])[-1]) >= 6:
                proc.send_signal(signal.SIGKILL)
                break
            assert proc.poll() is None, 'training ended before the kill'
            time.sleep(0.002)
        else:
            pytest.fail('no checkpoint save seen')
    finally:
        proc.kill()
        proc.wait()
    assert glob.glob(str(work / '.tmp_*')), 'the kill missed the save window'
    named = (work / 'last_checkpoint').read_text()
    meta = _load(named)['meta']  # complete: it loads
    for path in glob.glob(str(work / 'iter_*.pth')):  # and so does every other one left
        _load(path)
    killed_at = meta['iter']
    assert killed_at >= 5

    res = subprocess.run(
        _cmd(data, work, '--resume'),
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    out = res.stdout + res.stderr
    assert f'resumed epoch: {meta["epoch"]}, iter: {killed_at}' in out
    assert not glob.glob(str(work / '.tmp_*')), 'stale temporary not removed'
    resumed = _losses(work / 'iter_12.pth')
    assert sorted(resumed) == list(range(1, 13))
    for it in range(killed_at + 1, 13):  # float32 on one CPU thread: bit for bit
        assert resumed[it] == reference[it], (it, resumed[it], reference[it])


# ------------------------------------------------------------ tools/dist_train.sh
@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason='checks the CPU fallback')
def test_dist_train_sh_two_cpu_processes(tmp_path):
    data = _data(tmp_path)
    work = tmp_path / 'ddp'
    env = dict(
        os.environ,
        PYTHON=sys.executable,
        PORT=str(29700 + os.getpid() % 200),
        PYTHONWARNINGS='ignore')
    cmd = [
        'bash',
        osp.join(ROOT, 'tools', 'dist_train.sh'), BOTTLE, '2', '--work-dir',
        str(work), '--no-validate', '--cfg-options', f'train_dataloader.dataset.data_root={data}',
        'train_dataloader.batch_size=4', 'train_cfg.max_epochs=2',
        'default_hooks.checkpoint.interval=1'
    ]
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-4000:]
    assert 'no CUDA; distributed over gloo on CPUs, world size 2' in out
    ckpt = _load(work / 'epoch_2.pth')
    assert (work / 'last_checkpoint').read_text() == str(work / 'epoch_2.pth')
    # 16 frames / (2 ranks x 4) = 2 iterations per epoch
    assert ckpt['meta']['iter'] == 4
    assert all(
        torch.isfinite(v).all() for v in ckpt['state_dict'].values() if v.is_floating_point())
    assert not glob.glob(str(work / '.tmp_*'))

"""The bottle workflow end to end on the CPU: synthetic video → bottle_data → train
(loss falls by orders of magnitude) → resume → tools/test.py --show-dir → mmpose's
init_model + inference_topdown.

Slow (60 training epochs, three interpreters): the default suite covers the tools on the
bottle data in-process (tests/test_bad_inputs.py, tests/test_train_tool.py)."""
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.runner import Runner

from keypose_ext.testing.synthetic_bottle import make_bottle_dataset

pytestmark = pytest.mark.slow

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIG = osp.join(ROOT, 'configs/bottle/td-depthreg_res18_1xb16-40e_bottle-synthetic-96x96.py')
EPOCHS = 60


def _cfg(data_root, work_dir, **overrides):
    cfg = Config.fromfile(CONFIG)
    cfg.merge_from_dict({
        'work_dir': str(work_dir),
        'train_dataloader.dataset.data_root': str(data_root),
        'val_dataloader.dataset.data_root': str(data_root),
        'test_dataloader.dataset.data_root': str(data_root),
        'train_cfg.max_epochs': EPOCHS,
        'train_cfg.val_interval': EPOCHS,
        'default_hooks.logger.interval': 1,
        'default_hooks.checkpoint.interval': EPOCHS // 2,
        'randomness': dict(seed=0),
        **overrides,
    })
    return cfg


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """16 frames, one batch of 16 per epoch, 60 epochs: ~40 s on 2 cores."""
    root = tmp_path_factory.mktemp('bottle')
    make_bottle_dataset(str(root / 'data'), num_frames=16, size=(160, 120), seed=1)
    cfg = _cfg(root / 'data', root / 'work')
    runner = Runner.from_cfg(cfg)
    losses = []

    class Recorder(Hook):  # every iteration's loss

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            losses.append(outputs['loss'].item())

    runner.register_hook(Recorder(), priority='LOWEST')
    runner.train()
    return dict(root=root, cfg=cfg, losses=losses, runner=runner)


def test_loss_falls_by_orders_of_magnitude(trained):
    losses = trained['losses']
    assert len(losses) == EPOCHS
    first, last = losses[0], np.mean(losses[-3:])
    assert last < first / 100, f'loss {first:.4g} -> {last:.4g}'
    metrics = trained['runner'].message_hub.log_scalars
    assert metrics['val/bottle/mean_px_error'].current() < 8  # pixels, on 160x120 frames


def _last_ckpt(work):
    return open(work / 'last_checkpoint').read().strip()


def _tool(*args):
    return subprocess.run([sys.executable, *args],
                          cwd=ROOT,
                          capture_output=True,
                          text=True,
                          timeout=600)


def test_resume_continues_from_the_last_checkpoint(trained):
    work = trained['root'] / 'work'
    data = trained['root'] / 'data'
    res = _tool('tools/train.py', CONFIG, '--work-dir', str(work), '--resume', '--cfg-options',
                f'train_dataloader.dataset.data_root={data}',
                f'val_dataloader.dataset.data_root={data}', f'train_cfg.max_epochs={EPOCHS + 2}',
                f'train_cfg.val_interval={EPOCHS + 2}', 'default_hooks.checkpoint.interval=1')
    assert res.returncode == 0, res.stderr[-3000:]
    assert f'resumed epoch: {EPOCHS}' in res.stdout + res.stderr
    assert osp.isfile(work / f'epoch_{EPOCHS + 2}.pth')
    assert not list(work.glob('.tmp_*'))  # atomic saves leave no temporaries


def test_tools_test_writes_box_frames(trained):
    work = trained['root'] / 'work'
    data = trained['root'] / 'data'
    res = _tool('tools/test.py', CONFIG, _last_ckpt(work), '--work-dir', str(work / 'test'),
                '--show-dir', 'vis', '--cfg-options', f'test_dataloader.dataset.data_root={data}')
    assert res.returncode == 0, res.stderr[-3000:]
    out = res.stdout + res.stderr
    for key in ('bottle/mean_px_error', 'bottle/PCK', 'bottle/mean_depth_error',
                'bottle/objectron_2d_error'):
        assert key in out
    frames = list((work / 'test').glob('*/vis/*.jpg'))
    assert len(frames) == 16


def test_mmpose_init_model_and_inference_topdown(trained):
    from mmpose.apis import inference_topdown, init_model

    from keypose_ext.utils import mmengine_checkpoint_globals
    work = trained['root'] / 'work'
    # torch >= 2.6 loads weights_only: our checkpoints need the allow-list, in a scope
    with mmengine_checkpoint_globals():
        model = init_model(CONFIG, _last_ckpt(work), device='cpu')
    img = str(trained['root'] / 'data' / 'images' / '000003.jpg')
    results = inference_topdown(model, img)  # no boxes: the whole frame, as in training
    pred = results[0].pred_instances
    assert pred.keypoints.shape == (1, 9, 2)
    assert pred.keypoints_depth.shape == (1, 9)
    gt = trained['runner'].train_dataloader.dataset.get_data_info(3)
    err = np.linalg.norm(pred.keypoints[0] - gt['keypoints'][0], axis=-1).mean()
    assert err < 10, f'{err:.1f} px'


def test_cli_reports_a_missing_config_in_one_line():
    res = _tool('tools/train.py', 'configs/bottle/no_such_config.py')
    assert res.returncode == 2
    assert 'no_such_config.py' in res.stderr and 'Traceback' not in res.stderr

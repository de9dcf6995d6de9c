"""Seed 001's success criteria, on the CPU: single-image mode (the same image as
support and query, in training and validation) reaches loss < 0.1 and
PCK@0.2 >= 95 % within 20 epochs x 20 episodes.

Runs the real config (configs/cape/capeseq_res18_1xb1-20e_synthetic-mp100-single-image-64x64.py:
a 2-stage ResNet-18 at 64x64) with mmengine's Runner, exactly as ``tools/train.py``
does. About 25-40 s on one CPU thread (marked slow).

What this proves is the pipeline and the fit, not that the model reads the query:
support = query, and each decoder token embeds its support keypoint's location, so
the answer is in the supports. The test measures that too: with the query crop
blanked the model still scores high. tests/test_cape_overfit_category.py is the
check that needs the query.
"""
import glob
import os
import time

import numpy as np
import pytest
import torch
from cape_fixtures import make_data
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.runner import Runner

CONFIG = os.path.join(
    os.path.dirname(__file__), '..', 'configs', 'cape',
    'capeseq_res18_1xb1-20e_synthetic-mp100-single-image-64x64.py')


class _Record(Hook):

    def __init__(self):
        self.losses, self.val = {}, []

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.losses.setdefault(runner.epoch, []).append({
            k: float(v.detach())
            for k, v in outputs.items()
        })

    def after_val_epoch(self, runner, metrics=None):
        self.val.append(dict(metrics))


@pytest.mark.slow
def test_single_image_mode_meets_the_seed_criteria(tmp_path):
    from keypose_ext.testing.synthetic_mp100 import DEFAULT_KEYPOINT_COUNTS
    make_data(tmp_path / 'data', images_per_category=4, keypoint_counts=DEFAULT_KEYPOINT_COUNTS)
    cfg = Config.fromfile(CONFIG)
    for dl in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[dl].dataset.data_root = str(tmp_path / 'data')
    cfg.work_dir = str(tmp_path / 'work')
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=100)
    assert cfg.train_cfg.max_epochs == 20
    assert cfg.train_dataloader.dataset.episodes_per_epoch == 20
    assert cfg.train_dataloader.batch_size == 1

    threads = torch.get_num_threads()
    # one thread: tiny tensors; OpenMP threads fighting other jobs cost 10x here
    torch.set_num_threads(1)
    try:
        start = time.time()
        runner = Runner.from_cfg(cfg)
        rec = _Record()
        runner.register_hook(rec, priority='LOWEST')
        runner.train()
        seconds = time.time() - start
        # the support-location shortcut: the query crop blanked, same supports
        runner.model.data_preprocessor.blank_query = True
        blank = runner.val_loop.run()['PCK@0.2']
    finally:
        torch.set_num_threads(threads)

    first = np.mean([x['loss'] for x in rec.losses[0]])
    last = {k: np.mean([x[k] for x in rec.losses[19]]) for k in ('loss', 'loss_ce', 'loss_coords')}
    pck = [m['PCK@0.2'] for m in rec.val[:20]]
    print(f'\nsingle-image mode: {seconds:.1f} s; loss epoch 1 {first:.4f} -> '
          f'epoch 20 {last["loss"]:.4f} (ce {last["loss_ce"]:.4f}, coords '
          f'{last["loss_coords"]:.4f}); PCK@0.2 per epoch ' + ' '.join(f'{p:.2f}' for p in pck) +
          f'; query blanked {blank:.2f}')
    assert len(rec.losses[0]) == 20 and len(pck) == 20
    assert last['loss'] < 0.1
    assert pck[-1] >= 0.95
    assert first > 10 * last['loss']  # it learned; it did not start there
    assert pck[0] < 0.95 or rec.val[0]['EPE'] > 2 * rec.val[19]['EPE']
    # what this mode cannot show: the answer is in the supports (see the docstring);
    # if this fails, the mode has been made to need the query: update docs/cape.md
    assert blank >= 0.5
    log = open(glob.glob(os.path.join(cfg.work_dir, '*', '*.log'))[0]).read()
    for key in ('loss: ', 'loss_ce: ', 'loss_coords: ', 'PCK@0.2: ',
                'DEBUG SINGLE IMAGE MODE ENABLED', 'SINGLE IMAGE VALIDATION MODE'):
        assert key in log, key

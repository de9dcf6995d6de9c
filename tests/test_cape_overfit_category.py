"""The learning check that needs the query image (overfit-category mode).

Support and query are *different* images of one category (``debug_overfit_category``),
so the answer is not in the supports. A small model reaches PCK@0.2 >= 0.9 on its
training pairs; the same model with the query crop blanked
(``CapeDataPreprocessor(blank_query=True)``) falls to chance (<= 0.3): its answers
come from the query. Compare tests/test_cape_single_image_mode.py, where support =
query and the blanked model still scores high.

- ``test_overfit_category_config_needs_the_query`` (slow, ~45 s): the real config
  (configs/cape/capeseq_res18_1xb8-10e_synthetic-mp100-overfit-category-64x64.py) with mmengine's
  Runner, as ``tools/train.py`` runs it.
- ``test_a_few_steps_already_need_the_query`` (a few seconds): the same mode, the
  config's model and optimiser settings, 12 steps by hand on 8 images; the
  blank-query control drops all the same.

The pairs themselves would let a model that ignores the query do well: copying the
support pose into the query crop scores about 0.75 PCK@0.2 here (instances of one
category look alike in their crops), the crop centre about 0.03. The blanked model
scores near the latter, so it does not take that route.
"""
import copy
import os
import time

import numpy as np
import pytest
import torch
from cape_fixtures import dataset_cfg, make_data
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.registry import DefaultScope
from mmengine.runner import Runner
from mmengine.structures import InstanceData
from mmpose.registry import DATASETS, METRICS, MODELS

CONFIG = os.path.join(
    os.path.dirname(__file__), '..', 'configs', 'cape',
    'capeseq_res18_1xb8-10e_synthetic-mp100-overfit-category-64x64.py')


def _pck(model, dataset, blank_query=False, batch_size=16):
    """PCK@0.2 of ``model`` on every pair of ``dataset`` (EpisodicPCKMetric)."""
    metric = METRICS.build(dict(type='EpisodicPCKMetric'))
    model.eval()
    model.data_preprocessor.blank_query = blank_query
    try:
        items = [dataset[i] for i in range(len(dataset))]
        for i in range(0, len(items), batch_size):
            data = model.data_preprocessor(pseudo_collate(items[i:i + batch_size]))
            with torch.no_grad():
                out = model(**data, mode='predict')
            metric.process({}, [d.to_dict() for d in out])
    finally:
        model.data_preprocessor.blank_query = False
    return metric.compute_metrics(metric.results)['PCK@0.2']


def _support_pose_pck(dataset):
    """PCK@0.2 of copying the support pose into the query crop (no query image)."""
    metric = METRICS.build(dict(type='EpisodicPCKMetric'))
    for i in range(len(dataset)):
        ds = dataset[i]['data_samples']
        xy = np.asarray(ds.support_keypoint_labels[0], np.float64) * ds.input_scale
        ds.pred_instances = InstanceData(
            keypoints=(xy + ds.input_center - 0.5 * ds.input_scale)[None])
        metric.process({}, [ds.to_dict()])
    return metric.compute_metrics(metric.results)['PCK@0.2']


def test_a_few_steps_already_need_the_query(tmp_path):
    # split 1 of these six categories trains on category 6 (17 keypoints)
    make_data(tmp_path, images_per_category=8)
    cfg = Config.fromfile(CONFIG)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        start = time.time()
        with DefaultScope.overwrite_default_scope('mmpose'):
            train = DATASETS.build(
                dataset_cfg(tmp_path, debug_overfit_category=6, episodes_per_epoch=96))
            pairs = DATASETS.build(
                dataset_cfg(
                    tmp_path,
                    subset='train',
                    test_mode=True,
                    debug_overfit_category=6,
                    split_key='train',
                    episodes_per_category=6,
                    num_queries_per_episode=4))
            torch.manual_seed(0)
            model = MODELS.build(cfg.model)
        before = _pck(model, pairs)
        opt = torch.optim.AdamW(
            model.parameters(),
            lr=cfg.optim_wrapper.optimizer.lr,
            weight_decay=cfg.optim_wrapper.optimizer.weight_decay)
        for step in range(12):
            model.train()
            batch = [train[step * 8 + j] for j in range(8)]
            data = model.data_preprocessor(pseudo_collate(batch), True)
            loss = sum(model(**data, mode='loss').values())
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim_wrapper.clip_grad.max_norm)
            opt.step()
        real, blank = _pck(model, pairs), _pck(model, pairs, blank_query=True)
        seconds = time.time() - start
        copy_support = _support_pose_pck(pairs)
    finally:
        torch.set_num_threads(threads)
    print(f'\noverfit-category, 12 steps: PCK@0.2 {before:.3f} -> {real:.3f}; blank '
          f'query {blank:.3f}; copying the support pose {copy_support:.3f} '
          f'({seconds:.1f} s)')
    # support and query are different images of the category
    sample = pairs[0]['data_samples']
    assert sample.support_img_paths != [sample.img_path]
    assert real >= 0.9 and real > before + 0.3  # it learned ...
    assert blank <= 0.3  # ... from the query,
    assert copy_support > 0.5  # though the supports alone could have scored well


@pytest.mark.slow
def test_overfit_category_config_needs_the_query(tmp_path):
    from keypose_ext.testing.synthetic_mp100 import DEFAULT_KEYPOINT_COUNTS
    make_data(tmp_path / 'data', images_per_category=20, keypoint_counts=DEFAULT_KEYPOINT_COUNTS)
    cfg = Config.fromfile(CONFIG)
    for dl in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[dl].dataset.data_root = str(tmp_path / 'data')
        assert cfg[dl].dataset.debug_overfit_category == 6
    cfg.work_dir = str(tmp_path / 'work')
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=100)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        start = time.time()
        runner = Runner.from_cfg(copy.deepcopy(cfg))
        runner.train()
        real = runner.val_loop.run()['PCK@0.2']
        runner.model.data_preprocessor.blank_query = True
        blank = runner.val_loop.run()['PCK@0.2']
        seconds = time.time() - start
    finally:
        torch.set_num_threads(threads)
    val = runner.val_dataloader.dataset
    copy_support = _support_pose_pck(val)
    print(f'\noverfit-category config: PCK@0.2 {real:.3f}, blank query {blank:.3f}, '
          f'copying the support pose {copy_support:.3f} ({seconds:.1f} s)')
    assert {val.get_episode(i)['category_id'] for i in range(len(val))} == {6}
    assert real >= 0.9
    assert blank <= 0.3
    assert copy_support > 0.5

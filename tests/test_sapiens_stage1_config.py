import glob
import os
import os.path as osp
import subprocess
import sys

import cv2
import numpy as np
import pytest
from mmengine.config import Config
from sapiens_test_utils import ROOT, make_tiny_trace, write_tiny_stage1_config

from keypose_ext.testing.synthetic_coco import make_synthetic_coco
from keypose_ext.models.backbones.sapiens_torchscript_backbone import SAPIENS_ARCHS
from keypose_ext.utils import sapiens_memory_estimate as mem

CFG_DIR = osp.join(ROOT, 'configs', 'sapiens')


def _load(name):
    return Config.fromfile(osp.join(CFG_DIR, name))


def test_gtx1650_config_has_the_seed_settings():
    cfg = _load('stage1_gtx1650.py')
    bb, head = cfg.model.backbone, cfg.model.head
    assert bb.type == 'SapiensTorchScriptBackbone' and bb.arch == 'sapiens_1b'
    assert bb.checkpoint.endswith('sapiens_1b_epoch_173_torchscript.pt2')
    assert tuple(bb.img_size) == (384, 288)
    assert tuple(head.decoder.input_size) == (288, 384)  # codec sizes are (W, H)
    assert tuple(head.decoder.heatmap_size) == (72, 96)
    assert head.decoder.type == 'UDPHeatmap' and head.type == 'HeatmapHead'
    assert head.in_channels == SAPIENS_ARCHS['sapiens_1b']['embed_dims']
    affine = [t for t in cfg.train_dataloader.dataset.pipeline if t.type == 'TopdownAffine']
    assert tuple(affine[0].input_size) == (288, 384) and affine[0].use_udp
    assert cfg.train_dataloader.batch_size == 2 and cfg.train_dataloader.num_workers == 2
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    assert cfg.optim_wrapper.accumulative_counts == 16
    assert cfg.optim_wrapper.optimizer.lr == 5e-4
    hook = cfg.custom_hooks[0]
    assert hook.type == 'SapiensPhaseSwitchHook' and hook.switch_epoch == 10
    assert bb.trainable_layers == 0  # built in phase 1
    assert cfg.train_cfg.max_epochs == 110
    warmup, cosine = cfg.param_scheduler
    assert warmup.type == 'LinearLR' and warmup.end <= 10
    assert cosine.type == 'CosineAnnealingLR' and (cosine.begin, cosine.end) == (10, 110)
    ck = cfg.default_hooks.checkpoint
    assert ck.interval == 5 and ck.save_best == 'coco/AP' and ck.save_last
    assert {b.type for b in cfg.visualizer.vis_backends} >= {'TensorboardVisBackend'}
    assert cfg.val_evaluator.type == 'CocoMetric'
    assert cfg.train_dataloader.dataset.ann_file.endswith('person_keypoints_train2017.json')
    assert cfg.train_dataloader.dataset.data_prefix.img == 'images/train2017/'


def test_variants_inherit_and_change_only_their_settings():
    a100, minimal = _load('stage1_a100.py'), _load('stage1_minimal.py')
    assert tuple(a100.model.backbone.img_size) == (512, 384)
    assert tuple(a100.model.head.decoder.heatmap_size) == (96, 128)
    assert a100.train_dataloader.batch_size == 32 and a100.optim_wrapper.accumulative_counts == 1
    assert a100.custom_hooks[0].phase2.trainable_layers == -1
    assert tuple(minimal.model.backbone.img_size) == (320, 240)
    assert tuple(minimal.model.head.decoder.heatmap_size) == (60, 80)
    assert minimal.train_dataloader.batch_size == 1
    assert minimal.optim_wrapper.accumulative_counts == 32
    for cfg in (a100, minimal):
        w, h = cfg.model.head.decoder.input_size
        assert tuple(cfg.model.backbone.img_size) == (h, w)
        assert all(tuple(t.input_size) == (w, h) for t in
                   cfg.val_dataloader.dataset.pipeline if t.type == 'TopdownAffine')
        assert cfg.optim_wrapper.optimizer.lr == 5e-4 and cfg.train_cfg.max_epochs == 110


def test_4gb_configs_fit_by_the_estimate_and_full_finetuning_does_not():
    arch = SAPIENS_ARCHS['sapiens_1b']
    budget = mem.allocator_budget(4 * mem.GiB)
    for name in ('stage1_gtx1650.py', 'stage1_minimal.py'):
        cfg = _load(name)
        hw, bs = tuple(cfg.model.backbone.img_size), cfg.train_dataloader.batch_size
        p1 = mem.estimate_phase_memory(arch, hw, bs, 0, 2)
        n = cfg.custom_hooks[0].phase2.trainable_layers
        p2 = mem.estimate_phase_memory(arch, hw, bs, n, 2, with_cp=True)
        assert p1['total'] < p2['total'] <= budget, name
    # the seed's literal phase 2 (everything trainable, batch 2) cannot fit 4 GB
    assert mem.estimate_phase_memory(arch, (384, 288), 2, -1, 4,
                                     with_cp=True)['total'] > 4 * budget


def test_tiny_training_then_tools_test_reports_ap_and_draws(tmp_path):
    from mmengine.runner import Runner
    ckpt, _ = make_tiny_trace(tmp_path / 'tiny.pt2')
    make_synthetic_coco(str(tmp_path / 'coco'))
    cfg_path = write_tiny_stage1_config(tmp_path, ckpt, tmp_path / 'coco', switch_epoch=1,
                                        max_epochs=1)
    cfg = Config.fromfile(cfg_path)
    cfg.work_dir = str(tmp_path / 'work')
    runner = Runner.from_cfg(cfg)
    runner.train()
    logs = runner.message_hub.log_scalars
    assert np.isfinite(logs['train/loss'].current())
    assert 'val/coco/AP' in logs
    ckpt_path = osp.join(cfg.work_dir, 'epoch_1.pth')
    test_tool = osp.join(ROOT, 'tools', 'test.py')
    if not osp.isfile(test_tool):
        pytest.skip('tools/test.py not written yet')
    env = dict(os.environ, PYTHONWARNINGS='ignore')
    res = subprocess.run(
        [sys.executable, test_tool, cfg_path, ckpt_path, '--work-dir',
         str(tmp_path / 'test'), '--show-dir', 'vis'],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert 'coco/AP' in res.stdout + res.stderr
    drawn = glob.glob(str(tmp_path / 'test' / '**' / 'vis' / '*.jpg'), recursive=True)
    assert drawn, 'no visualisations written'
    # mmpose names them <image stem>_<instance index>.jpg
    stem = osp.basename(drawn[0]).rsplit('_', 1)[0]
    src = cv2.imread(str(tmp_path / 'coco' / 'images' / 'val2017' / f'{stem}.jpg'))
    out = cv2.imread(drawn[0])
    assert out is not None and out.shape[:2] == src.shape[:2]
    assert np.abs(out.astype(int) - src.astype(int)).mean() > 1  # skeleton drawn on it

"""The CAPE configs load, build and run through tools/train.py and tools/test.py."""
import glob
import os
import re
import subprocess
import sys

import pytest
import torch
from cape_fixtures import make_data
from mmengine.config import Config
from mmpose.registry import MODELS

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')
CAPE = os.path.join(ROOT, 'configs', 'cape')
SPLIT_CONFIGS = sorted(glob.glob(os.path.join(CAPE, 'capeseq_res50_1xb8-200e_mp100-split*.py')))


def test_splits_1_to_5_in_1_and_5_shot():
    names = [os.path.basename(f) for f in SPLIT_CONFIGS]
    assert len(names) == 10
    for f in SPLIT_CONFIGS:
        split, shots = map(int, re.search(r'split(\d)-(\d)shot', f).groups())
        cfg = Config.fromfile(f)
        for subset in ('train', 'val', 'test'):
            ds = cfg[f'{subset}_dataloader'].dataset
            assert ds.ann_file == f'annotations/mp100_split{split}_{subset}.json'
            assert ds.num_shots == shots and ds.type == 'MP100EpisodicDataset'
        assert cfg.val_dataloader.dataset.episodes_per_category == 100
        assert cfg.test_dataloader.dataset.episodes_per_category == 200
        assert cfg.test_dataloader.dataset.num_queries_per_episode == 15
        assert cfg.train_dataloader.sampler.type == 'EpisodicSampler'
        ow = cfg.optim_wrapper
        assert ow.type == 'CpuFallbackAmpOptimWrapper' and ow.optimizer.type == 'AdamW'
        assert ow.accumulative_counts == 2 and ow.clip_grad.max_norm > 0
        assert cfg.model.backbone.type == 'ResNet' and cfg.model.backbone.depth == 50
        assert cfg.val_evaluator.type == 'EpisodicPCKMetric'
        assert cfg.visualizer.type == 'CapeVisualizer'


def test_every_cape_config_fixes_its_seeds_and_states_its_weights():
    configs = sorted(glob.glob(os.path.join(CAPE, '*.py')))
    assert len(configs) >= 13
    for f in configs:
        cfg = Config.fromfile(f)
        assert isinstance(cfg.randomness.seed, int), f  # figures reproduce
        for dl in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
            assert isinstance(cfg[dl].dataset.seed, int), (f, dl)  # and so do episodes
        name, init = os.path.basename(f), cfg.model.backbone.init_cfg
        if 'synthetic' in name:  # the CPU demos train from scratch: nothing to fetch
            assert init is None, name
        else:  # ImageNet weights of the backbone's own depth (MMPose's standard)
            depth = cfg.model.backbone.depth
            assert init == dict(type='Pretrained', checkpoint=f'torchvision://resnet{depth}')


@pytest.mark.parametrize('name', [
    'capeseq_res50_1xb8-200e_mp100-split1-1shot-256x256.py',
    'capeseq_res18_1xb8-200e_mp100-split1-1shot-256x256.py',
    'capeseq_res18_1xb8-20e_synthetic-mp100-128x128.py',
    'capeseq_res18_1xb1-20e_synthetic-mp100-single-image-64x64.py',
    'capeseq_res18_1xb8-10e_synthetic-mp100-overfit-category-64x64.py'
])
def test_model_builds_and_backbone_matches_head(name):
    cfg = Config.fromfile(os.path.join(CAPE, name))
    model = MODELS.build(cfg.model).eval()
    with torch.no_grad():
        q, s = model.extract_feat(torch.zeros(1, 2, 3, 64, 64))
    assert q.shape[1] == cfg.model.head.in_channels == model.head.in_channels
    assert s.shape[:2] == (1, 1)


@pytest.mark.slow  # three tools/*.py processes: 25-70 s on 2 cores
def test_tools_train_debug_single_image_then_test_show_dir(tmp_path):
    data = tmp_path / 'data'
    summary = make_data(data, images_per_category=6)
    work = tmp_path / 'work'
    root_opts = [
        f'{dl}.dataset.data_root={data}'
        for dl in ('train_dataloader', 'val_dataloader', 'test_dataloader')
    ]
    env = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')
    config = os.path.join(CAPE, 'capeseq_res18_1xb8-20e_synthetic-mp100-128x128.py')
    train = subprocess.run([
        sys.executable,
        os.path.join(ROOT, 'tools', 'train.py'), config, '--work-dir',
        str(work), '--debug-single-image', '5', '--debug-single-image-index', '2', '--cfg-options',
        *root_opts, 'train_cfg.max_epochs=2', 'train_cfg.val_interval=1',
        'train_dataloader.dataset.episodes_per_epoch=2', 'train_dataloader.batch_size=2'
    ],
                           capture_output=True,
                           text=True,
                           env=env,
                           timeout=300)
    assert train.returncode == 0, train.stdout[-3000:] + train.stderr[-3000:]
    out = train.stdout + train.stderr
    for key in ('DEBUG SINGLE IMAGE MODE ENABLED', 'image 3 of 6 in category',
                'SINGLE IMAGE VALIDATION MODE', 'loss_ce: ', 'loss_coords: ', 'PCK@0.2: '):
        assert key in out, key
    ckpt = work / 'epoch_2.pth'
    assert ckpt.is_file()

    test = subprocess.run([
        sys.executable,
        os.path.join(ROOT, 'tools', 'test.py'), config,
        str(ckpt), '--work-dir',
        str(work), '--show-dir', 'vis', '--cfg-options', *root_opts,
        'test_dataloader.dataset.episodes_per_category=1',
        'test_dataloader.dataset.num_queries_per_episode=2'
    ],
                          capture_output=True,
                          text=True,
                          env=env,
                          timeout=300)
    assert test.returncode == 0, test.stdout[-3000:] + test.stderr[-3000:]
    assert 'PCK@0.2: ' in test.stdout + test.stderr
    pictures = glob.glob(str(work / '*' / 'vis' / '*.jpg'))
    # one picture per (supports, query) pair: 1 episode x 2 queries per category
    assert len(pictures) == 2 * len(summary['splits'][1]['test'])

    bad = subprocess.run([
        sys.executable,
        os.path.join(ROOT, 'tools', 'train.py'), config, '--work-dir',
        str(work), '--debug-single-image', '5', '--debug-single-image-index', '99', '--cfg-options',
        *root_opts
    ],
                         capture_output=True,
                         text=True,
                         env=env,
                         timeout=300)
    assert bad.returncode != 0
    assert 'Image index out of range' in bad.stderr and '6 images' in bad.stderr

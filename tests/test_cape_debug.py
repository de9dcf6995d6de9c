"""keypose_ext/utils/cape_debug.py: the CAPE debug options, from a config or the command
line, applied in one place (the dataset's CapeDebugMode)."""
import os

import numpy as np
import pytest
from cape_fixtures import AUG_PIPELINE, make_data
from mmengine.config import Config
from mmpose.registry import DATASETS

import keypose_ext.utils.cape_debug as cape_debug
from keypose_ext.utils.cape_debug import CapeDebugMode, apply_cape_debug_options
from keypose_ext.utils.errors import KeyposeUserError

DEMO = os.path.join(
    os.path.dirname(__file__), '..', 'configs', 'cape',
    'capeseq_res18_1xb8-20e_synthetic-mp100-128x128.py')


def test_mode_checks_options_and_strips_random_transforms():
    off = CapeDebugMode()
    assert not off.enabled and off.category is None
    assert off.strip_pipeline(AUG_PIPELINE) == AUG_PIPELINE  # training keeps augmentation
    single = CapeDebugMode(single_image=4, single_image_index=2)
    assert single.enabled and single.category == 4
    kept = single.strip_pipeline(AUG_PIPELINE)
    assert [t['type'] for t in kept] == ['LoadImage', 'GetBBoxCenterScale', 'TopdownAffine']
    assert single.removed == ['RandomFlip', 'RandomBBoxTransform']
    assert single.augmentation_note() == 'Augmentation OFF (removed: RandomFlip, ' \
        'RandomBBoxTransform)'
    assert single.choose_image([10, 11, 12], 'cat') == (2, 12)
    with pytest.raises(
            KeyposeUserError,
            match=r'Image index out of range: '
            r'--debug-single-image-index 2, but category 4 \(cat\) has 2 images '
            r'\(valid 0..1\)'):
        single.choose_image([10, 11], 'cat')
    assert CapeDebugMode(overfit_category=3).check_category([1, 3], 'a.json') == [3]
    with pytest.raises(
            KeyposeUserError,
            match=r'No images found for category 3 in a.json. '
            r'Valid category ids: \[1, 2\]'):
        CapeDebugMode(overfit_category=3).check_category([2, 1], 'a.json')
    with pytest.raises(
            KeyposeUserError,
            match='debug_single_image and debug_overfit_category '
            'exclude each other'):
        CapeDebugMode(single_image=1, overfit_category=2)
    with pytest.raises(
            KeyposeUserError, match='debug_single_image_index needs '
            'debug_single_image CAT_ID'):
        CapeDebugMode(single_image_index=1)


def test_rewriter_sets_the_dataset_options_and_the_dataset_applies_them(tmp_path, monkeypatch):
    logged = []
    monkeypatch.setattr(cape_debug, 'print_log', lambda msg, **kw: logged.append(msg))
    summary = make_data(tmp_path, images_per_category=4)
    cfg = Config.fromfile(DEMO)
    for dl in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[dl].dataset.data_root = str(tmp_path)
    pipeline = cfg.train_dataloader.dataset.pipeline
    cat = summary['splits'][1]['train'][0]
    assert apply_cape_debug_options(cfg, single_image=cat, single_image_index=1) is cfg
    train = cfg.train_dataloader.dataset
    assert (train.debug_single_image, train.debug_single_image_index) == (cat, 1)
    assert train.pipeline == pipeline  # the dataset, not the rewriter, drops augmentation
    for dl in ('val_dataloader', 'test_dataloader'):
        ds_cfg = cfg[dl].dataset
        assert ds_cfg.test_mode and ds_cfg.ann_file == train.ann_file
        assert ds_cfg.debug_single_image == cat
    assert cfg.test_dataloader.dataset.episodes_per_category == 20  # kept from the config
    assert any('single image of category' in m for m in logged)
    val = DATASETS.build(cfg.val_dataloader.dataset)
    built = DATASETS.build(cfg.train_dataloader.dataset)
    assert not any(type(t).__name__.startswith('Random') for t in built.pipeline.transforms)
    assert val[0]['data_samples'].img_path == built[0]['data_samples'].img_path
    assert np.array_equal(val[0]['inputs'].numpy(), built[0]['inputs'].numpy())

    untouched = Config.fromfile(DEMO)
    assert apply_cape_debug_options(untouched).train_dataloader.dataset.get(
        'debug_single_image') is None
    with pytest.raises(
            KeyposeUserError, match='--debug-single-image-index needs '
            '--debug-single-image CAT_ID'):
        apply_cape_debug_options(Config.fromfile(DEMO), single_image_index=2)
    with pytest.raises(
            KeyposeUserError,
            match='--debug-single-image and '
            '--debug-overfit-category exclude each other'):
        apply_cape_debug_options(Config.fromfile(DEMO), single_image=1, overfit_category=2)
    coco = Config(dict(train_dataloader=dict(dataset=dict(type='CocoDataset'))))
    with pytest.raises(KeyposeUserError, match='MP100EpisodicDataset'):
        apply_cape_debug_options(coco, overfit_category=3)

import json
import os
import os.path as osp

import mmpose
import numpy as np
import pytest

from keypose_ext.datasets.checked_coco_dataset import CheckedCocoDataset
from keypose_ext.testing.synthetic_coco import make_synthetic_coco

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
PIPELINE = [dict(type='LoadImage'), dict(type='GetBBoxCenterScale'), dict(type='PackPoseInputs')]


@pytest.fixture
def coco(tmp_path):
    make_synthetic_coco(str(tmp_path), dict(train=3, val=4))
    return tmp_path


def _dataset(root, split='val', **kw):
    return CheckedCocoDataset(
        data_root=str(root),
        data_mode='topdown',
        test_mode=split == 'val',
        ann_file=f'annotations/person_keypoints_{split}2017.json',
        data_prefix=dict(img=f'images/{split}2017/'),
        pipeline=PIPELINE,
        **kw)


def test_metainfo_is_mmpose_coco():
    # No copy of mmpose's COCO metainfo lives here: mmpose's packaged file is used.
    assert CheckedCocoDataset.METAINFO['from_file'].startswith(osp.dirname(mmpose.__file__))
    assert not osp.exists(osp.join(ROOT, 'configs/_base_/datasets/coco.py'))
    meta = CheckedCocoDataset._load_metainfo()
    assert meta['num_keypoints'] == 17 and meta['dataset_name'] == 'coco'


def test_synthetic_set_uses_mmpose_coco_names_and_skeleton(coco):
    from keypose_ext.utils.errors import KeyposeUserError
    cat = json.load(open(coco / 'annotations/person_keypoints_val2017.json'))['categories'][0]
    meta = CheckedCocoDataset._load_metainfo()
    assert cat['keypoints'] == [meta['keypoint_id2name'][i] for i in range(17)]
    assert sorted(map(tuple, cat['skeleton'])) == sorted(
        (a + 1, b + 1) for a, b in meta['skeleton_links'])  # COCO JSON is 1-based
    with pytest.raises(KeyposeUserError, match='not found'):
        _dataset(coco / 'nowhere')


def _predictions_equal_to_gt(ds, jitter=0.0, seed=0):
    rng = np.random.default_rng(seed)
    samples = []
    for i in range(len(ds)):
        packed = ds[i]['data_samples']
        s = packed.to_dict()
        kpts = np.asarray(packed.gt_instances.keypoints, np.float32)
        s['pred_instances'] = dict(
            keypoints=kpts + rng.normal(0, jitter, kpts.shape).astype(np.float32),
            keypoint_scores=np.ones(kpts.shape[:2], np.float32))
        samples.append(s)
    return samples


def test_coco_ap_is_one_when_predictions_equal_ground_truth(coco, tmp_path):
    from mmpose.evaluation.metrics import CocoMetric
    ds = _dataset(coco)
    n_ann = len(json.load(open(coco / 'annotations/person_keypoints_val2017.json'))['annotations'])
    assert len(ds) == n_ann > 4  # top-down: one sample per person
    ann = str(coco / 'annotations/person_keypoints_val2017.json')
    for jitter, check in ((0.0, lambda ap: ap == pytest.approx(1.0)), (6.0, lambda ap: ap < 0.9)):
        metric = CocoMetric(ann_file=ann, outfile_prefix=str(tmp_path / f'r{jitter}'))
        metric.dataset_meta = ds.metainfo
        metric.process([], _predictions_equal_to_gt(ds, jitter))
        res = metric.evaluate(size=len(ds))
        assert check(res['coco/AP']), res
    assert res['coco/AR'] < 1.0


def test_missing_annotation_file_or_folder(coco):
    with pytest.raises(
            FileNotFoundError,
            match='person_keypoints_test2017.json.*'
            'tools/download_coco.py --data-root'):
        _dataset(coco, split='test')
    os.rename(coco / 'images/val2017', coco / 'images/val_moved')
    with pytest.raises(
            FileNotFoundError, match='image folder .*images/val2017/.*'
            'download_coco.py'):
        _dataset(coco)


def test_missing_images_error_or_skip(coco, caplog):
    os.remove(coco / 'images/val2017/000000000004.jpg')
    with pytest.raises(
            FileNotFoundError,
            match=r"1 of 4 images .*missing.*"
            r"000000000004.jpg.*missing_images='skip'"):
        _dataset(coco)
    ds = _dataset(coco, missing_images='skip')
    paths = {d['img_path'] for d in (ds.get_data_info(i) for i in range(len(ds)))}
    assert len(paths) == 3 and not any(p.endswith('04.jpg') for p in paths)
    with pytest.raises(ValueError, match="missing_images='ignore'"):
        _dataset(coco, missing_images='ignore')


def test_train_split_through_the_training_pipeline(coco):
    codec = dict(type='UDPHeatmap', input_size=(48, 64), heatmap_size=(12, 16), sigma=1.5)
    ds = CheckedCocoDataset(
        data_root=str(coco),
        data_mode='topdown',
        ann_file='annotations/person_keypoints_train2017.json',
        data_prefix=dict(img='images/train2017/'),
        pipeline=[
            dict(type='LoadImage'),
            dict(type='GetBBoxCenterScale'),
            dict(type='TopdownAffine', input_size=codec['input_size'], use_udp=True),
            dict(type='GenerateTarget', encoder=codec),
            dict(type='PackPoseInputs')
        ])
    out = ds[0]
    assert tuple(out['inputs'].shape) == (3, 64, 48)
    assert tuple(out['data_samples'].gt_fields.heatmaps.shape) == (17, 16, 12)
    assert ds.metainfo['num_keypoints'] == 17

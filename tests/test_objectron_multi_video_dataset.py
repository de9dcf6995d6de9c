"""ObjectronMultiVideoDataset: split files of many videos, intrinsics and video ids per
sample, one frame cache for all videos within a budget."""
import json
import os
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.dataset import pseudo_collate
from mmpose.registry import DATASETS

from keypose_ext.dataset_converters.objectron_clips_converter import convert_objectron_clips
from keypose_ext.objectron.box3d import project_points
from keypose_ext.testing.synthetic_objectron import make_objectron_multivideo

W, H = 72, 96
META_KEYS = ('id', 'img_id', 'img_path', 'ori_shape', 'img_shape', 'input_size', 'input_center',
             'input_scale', 'flip', 'flip_direction', 'flip_indices', 'video_id', 'frame_index',
             'camera_intrinsics', 'objectron_visibility')
CODEC = dict(type='DepthKeypointCodec', input_size=(64, 64))


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('objectron')
    make_objectron_multivideo(str(root / 'src'), num_videos=4, num_frames=4, size=(W, H))
    convert_objectron_clips(
        str(root / 'src'), str(root / 'data'), split=(0.5, 0.25, 0.25), progress=False)
    return str(root / 'data')


def _pipeline(flip=False):
    return [
        dict(type='LoadImage'),
        dict(type='GetBBoxCenterScale', padding=1.0),
        *([dict(type='RandomBoxFlip', prob=1.0)] if flip else []),
        dict(type='TopdownAffine', input_size=(64, 64)),
        dict(type='GenerateTarget', encoder=CODEC),
        dict(type='PackDepthPoseInputs', meta_keys=META_KEYS),
    ]


def _build(data_root, split='train', **kwargs):
    cfg = dict(
        type='ObjectronMultiVideoDataset',
        data_root=data_root,
        ann_file=f'annotations_{split}.json',
        pipeline=_pipeline(),
        **kwargs)
    return DATASETS.build(cfg)


def test_samples_carry_video_id_intrinsics_and_3d(data_root):
    splits = json.load(open(osp.join(data_root, 'splits.json')))
    ds = _build(data_root)
    assert ds.video_ids == splits['train'] and len(ds) == 4 * len(splits['train'])
    assert ds.metainfo['flip_indices'] == [0, 5, 6, 7, 8, 1, 2, 3, 4]
    for i in range(len(ds)):
        info = ds.get_data_info(i)
        assert info['video_id'] in splits['train']
        assert info['camera_intrinsics'].shape == (3, 3)
        # The 3D truth projects onto the 2D truth with the sample's own intrinsics.
        np.testing.assert_allclose(
            project_points(info['keypoints_3d'][0], info['camera_intrinsics']),
            info['keypoints'][0],
            atol=2e-3)
    packed = ds[0]
    sample = packed['data_samples']
    assert packed['inputs'].shape == (3, 64, 64)
    assert sample.video_id == ds.video_ids[0] and sample.frame_index == 0
    assert sample.camera_intrinsics.shape == (3, 3)
    assert sample.gt_instances.keypoints_3d.shape == (1, 9, 3)
    assert sample.objectron_visibility == 1.0
    test = _build(data_root, 'test')
    assert set(test.video_ids).isdisjoint(ds.video_ids)


def test_frame_cache_within_a_budget_is_shared_by_workers(data_root, tmp_path):
    frame_mb = W * H * 3 / 2**20
    ds = _build(data_root, cache_budget_mb=5.5 * frame_mb, cache_dir=str(tmp_path))
    assert ds.num_cached == 5 and len(ds) == 8
    [cache_file] = os.listdir(tmp_path)
    assert os.path.getsize(tmp_path / cache_file) == 5 * W * H * 3 + 128
    reference = [ds[i]['inputs'] for i in range(len(ds))]
    # The cached frames no longer need their files; the others still do.
    cached = list(ds._store.index)
    for path in cached:
        os.rename(path, path + '.moved')
    try:
        loader = torch.utils.data.DataLoader(
            ds, batch_size=4, num_workers=2, collate_fn=pseudo_collate)
        batches = [b['inputs'] for b in loader]
        got = [x for batch in batches for x in batch]
        assert len(got) == 8 and all(torch.equal(a, b) for a, b in zip(got, reference))
    finally:
        for path in cached:
            os.rename(path + '.moved', path)
    again = _build(data_root, cache_budget_mb=5.5 * frame_mb, cache_dir=str(tmp_path))
    assert again.num_cached == 5 and again.num_decoded == 0  # reused, not decoded again
    everything = _build(data_root, cache_budget_mb=None, cache_dir=str(tmp_path))
    assert everything.num_cached == 8
    assert _build(data_root)._store is None  # default: no cache


def test_clear_errors(data_root, tmp_path):
    with pytest.raises(ValueError, match='cache_budget_mb'):
        _build(data_root, cache=True)
    with pytest.raises(ValueError, match='cache_budget_mb must be'):
        _build(data_root, cache_budget_mb=-1)
    coco = json.load(open(osp.join(data_root, 'annotations_train.json')))
    del coco['images'][1]['camera_intrinsics']
    bad = osp.join(data_root, 'no_intrinsics.json')
    with open(bad, 'w') as f:
        json.dump(coco, f)
    with pytest.raises(
            ValueError,
            match=r'no_intrinsics.json: image id 2 \(video .*\) has no '
            r'3x3 "camera_intrinsics"'):
        DATASETS.build(
            dict(
                type='ObjectronMultiVideoDataset',
                data_root=data_root,
                ann_file='no_intrinsics.json',
                pipeline=[]))

import numpy as np
import pytest
import torch
from mmpose.datasets.transforms import (GenerateTarget, GetBBoxCenterScale, PackPoseInputs,
                                        TopdownAffine)
from mmpose.registry import KEYPOINT_CODECS

from keypose_ext.codecs import DepthKeypointCodec

W, H = 192, 256


def _codec(**kw):
    cfg = dict(type='DepthKeypointCodec', input_size=(W, H), **kw)
    return KEYPOINT_CODECS.build(cfg)


def _random(n=2, k=9, seed=0):
    rng = np.random.default_rng(seed)
    kpts = rng.uniform([0, 0], [W, H], size=(n, k, 2))
    depth = rng.uniform(0.3, 1.2, size=(n, k))
    return kpts, depth


def test_encode_formula_and_weights():
    kpts, depth = _random()
    vis = np.ones((2, 9))
    vis[1, 4] = 0
    codec = _codec(depth_scale=0.5, depth_offset=0.7)
    enc = codec.encode(kpts, vis, keypoints_depth=depth)
    labels, weights = enc['keypoint_labels'], enc['keypoint_weights']
    assert labels.shape == (2, 9, 3) and labels.dtype == np.float32
    assert weights.shape == (2, 9) and weights.dtype == np.float32
    expect = np.concatenate([kpts / [W, H], ((depth - 0.7) / 0.5)[..., None]], axis=-1)
    expect[1, 4] = 0  # invisible → zeroed label
    np.testing.assert_allclose(labels, expect, rtol=1e-6, atol=1e-6)
    assert weights[1, 4] == 0 and weights.sum() == 17


def test_out_of_frame_corner_keeps_weight():
    kpts, depth = _random(n=1)
    kpts[0, 3] = [-20.0, H + 30.0]  # a box corner projected off the frame
    enc = _codec().encode(kpts, None, keypoints_depth=depth)
    assert enc['keypoint_weights'][0, 3] == 1
    np.testing.assert_allclose(
        enc['keypoint_labels'][0, 3, :2], [-20.0 / W, (H + 30.0) / H], rtol=1e-6)


def test_roundtrip_decode_and_decode_depth():
    kpts, depth = _random(n=3)
    codec = _codec(depth_scale=0.25, depth_offset=0.6)
    enc = codec.encode(kpts, np.ones((3, 9)), keypoints_depth=depth)
    dec_kpts, scores = codec.decode(enc['keypoint_labels'])
    np.testing.assert_allclose(dec_kpts, kpts, rtol=1e-5, atol=1e-3)
    np.testing.assert_array_equal(scores, np.ones((3, 9)))
    np.testing.assert_allclose(codec.decode_depth(enc['keypoint_labels']), depth, atol=1e-5)


def test_invisible_nan_depth_is_masked_not_propagated():
    kpts, depth = _random(n=1)
    depth[0, 2] = np.nan
    vis = np.ones((1, 9))
    vis[0, 2] = 0
    enc = _codec().encode(kpts, vis, keypoints_depth=depth)
    assert np.isfinite(enc['keypoint_labels']).all()
    assert enc['keypoint_weights'][0, 2] == 0


@pytest.mark.parametrize('bad', [np.nan, np.inf])
def test_visible_non_finite_depth_raises(bad):
    kpts, depth = _random(n=1)
    depth[0, 5] = bad
    with pytest.raises(ValueError, match='keypoints_depth.*keypoint 5'):
        _codec().encode(kpts, np.ones((1, 9)), keypoints_depth=depth)


def test_shape_and_k_errors():
    kpts, depth = _random(n=1, k=8)
    with pytest.raises(ValueError, match='num_keypoints=9'):
        _codec(num_keypoints=9).encode(kpts, None, keypoints_depth=depth)
    with pytest.raises(ValueError, match=r'keypoints_depth.*\(1, 8\)'):
        _codec().encode(kpts, None, keypoints_depth=depth[:, :7])
    with pytest.raises(ValueError, match='no `keypoints_depth`'):
        _codec().encode(kpts, None, keypoints_depth=None)
    with pytest.raises(ValueError, match=r'\(N, K, 3\)'):
        _codec().decode(np.zeros((1, 9, 2)))
    with pytest.raises(ValueError, match='num_keypoints=9'):
        _codec(num_keypoints=9).decode_depth(np.zeros((1, 8, 3)))
    with pytest.raises(ValueError, match='depth_scale'):
        DepthKeypointCodec(input_size=(W, H), depth_scale=0)


def test_generate_target_and_pack_pose_inputs():
    """mmpose's own transforms carry the depth labels to gt_instance_labels."""
    kpts, depth = _random(n=1)
    kpts = kpts * 0.5 + 20  # inside a 160x200 frame
    results = dict(
        img=np.zeros((200, 160, 3), np.uint8),
        img_shape=(200, 160),
        ori_shape=(200, 160),
        bbox=np.array([[0, 0, 160, 200]], np.float32),
        bbox_score=np.ones(1, np.float32),
        keypoints=kpts.astype(np.float32),
        keypoints_visible=np.ones((1, 9), np.float32),
        keypoints_depth=depth.astype(np.float32))
    codec_cfg = dict(type='DepthKeypointCodec', input_size=(W, H), depth_offset=0.5)
    for t in (GetBBoxCenterScale(padding=1.0), TopdownAffine(input_size=(W, H)),
              GenerateTarget(encoder=codec_cfg), PackPoseInputs()):
        results = t(results)
    sample = results['data_samples']
    labels = sample.gt_instance_labels.keypoint_labels
    assert isinstance(labels, torch.Tensor) and labels.shape == (1, 9, 3)
    assert sample.gt_instance_labels.keypoint_weights.shape == (1, 9)
    np.testing.assert_allclose(labels[0, :, 2].numpy(), depth[0] - 0.5, atol=1e-6)
    # x, y are the affine-transformed keypoints, normalised by input size
    assert (labels[..., :2] >= 0).all() and (labels[..., :2] <= 1).all()
    # the default instance table is untouched: bboxes still packed
    assert 'bboxes' in sample.gt_instances

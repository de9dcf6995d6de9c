"""PackDepthPoseInputs: depth ground truth + tensor images."""
import numpy as np
import pytest
import torch
from mmpose.registry import TRANSFORMS


def _results(img):
    rng = np.random.default_rng(0)
    return dict(
        img=img,
        img_shape=(8, 10),
        id=5,
        bbox=np.array([[0, 0, 10, 8]], np.float32),
        bbox_score=np.ones(1, np.float32),
        keypoints=rng.uniform(0, 8, (1, 9, 2)).astype(np.float32),
        keypoints_visible=np.ones((1, 9), np.float32),
        keypoints_depth=rng.uniform(0.5, 1, (1, 9)).astype(np.float32),
        keypoints_3d=rng.uniform(0, 1, (1, 9, 3)).astype(np.float32),
        keypoint_labels=np.zeros((1, 9, 3), np.float32),
        keypoint_weights=np.ones((1, 9), np.float32))


def test_packs_depth_and_3d_points():
    pack = TRANSFORMS.build(dict(type='PackDepthPoseInputs'))
    img = np.arange(8 * 10 * 3, dtype=np.uint8).reshape(8, 10, 3)
    results = _results(img)
    packed = pack(results)
    assert packed['inputs'].shape == (3, 8, 10)
    assert torch.equal(packed['inputs'], torch.from_numpy(img).permute(2, 0, 1))
    gt = packed['data_samples'].gt_instances
    np.testing.assert_array_equal(gt.keypoints_depth, results['keypoints_depth'])
    assert gt.keypoints_depth.shape == (1, 9)
    assert gt.keypoints_3d.shape == (1, 9, 3)
    labels = packed['data_samples'].gt_instance_labels
    assert labels.keypoint_labels.shape == (1, 9, 3)
    assert packed['data_samples'].metainfo['id'] == 5


def test_depth_survives_a_codec_instance_mapping_table():
    """GenerateTarget may hand over the codec's own table, which replaces
    PackPoseInputs' default; depths must still be packed."""
    pack = TRANSFORMS.build(dict(type='PackDepthPoseInputs'))
    results = _results(np.zeros((8, 10, 3), np.uint8))
    results['instance_mapping_table'] = dict(keypoints='keypoints')
    gt = pack(results)['data_samples'].gt_instances
    assert set(gt.keys()) == {'keypoints', 'keypoints_depth', 'keypoints_3d'}


def test_plain_pack_pose_inputs_drops_depth():
    """What this transform exists for: mmpose's packer ignores the depth."""
    packed = TRANSFORMS.build(dict(type='PackPoseInputs'))(_results(np.zeros((8, 10, 3), np.uint8)))
    assert 'keypoints_depth' not in packed['data_samples'].gt_instances


def test_tensor_image_is_permuted_without_numpy():
    pack = TRANSFORMS.build(dict(type='PackDepthPoseInputs'))
    img = torch.arange(8 * 10 * 3, dtype=torch.uint8).reshape(8, 10, 3)
    packed = pack(_results(img))
    assert torch.equal(packed['inputs'], img.permute(2, 0, 1))
    assert packed['inputs'].is_contiguous()
    gray = pack(_results(torch.zeros(8, 10)))['inputs']
    assert gray.shape == (1, 8, 10) and gray.dtype == torch.float32
    with pytest.raises(ValueError, match=r'\(H, W, C\)'):
        pack(_results(torch.zeros(1, 8, 10, 3)))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_cuda_tensor_image_stays_on_the_gpu():
    pack = TRANSFORMS.build(dict(type='PackDepthPoseInputs'))
    img = torch.randint(0, 255, (8, 10, 3), dtype=torch.uint8, device='cuda')
    packed = pack(_results(img))
    assert packed['inputs'].is_cuda
    assert torch.equal(packed['inputs'].cpu(), img.cpu().permute(2, 0, 1))

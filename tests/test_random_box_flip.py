"""RandomBoxFlip: a mirrored frame keeps a proper box, its depths, 3D points and intrinsics."""
import numpy as np
import pytest
from mmpose.registry import TRANSFORMS

from keypose_ext.datasets.bottle_metainfo import BOTTLE_METAINFO
from keypose_ext.datasets.objectron_multi_video_dataset import OBJECTRON_METAINFO
from keypose_ext.datasets.transforms.random_box_flip import X_MIRROR
from keypose_ext.objectron.box3d import box_from_transformation, fit_box, project_points

W, H = 80, 60
K = np.array([[70.0, 0, 38], [0, 72.0, 31], [0, 0, 1]])


def _results(flip_indices):
    from mmpose.datasets.datasets.utils import parse_pose_metainfo
    rot = np.array([[0.8, 0, 0.6], [0, 1, 0], [-0.6, 0, 0.8]])
    points = box_from_transformation(rot, [0.05, 0.02, 0.9], [0.08, 0.25, 0.1])
    kpts = project_points(points, K)
    return dict(
        img=np.random.default_rng(0).integers(0, 255, (H, W, 3), np.uint8),
        img_shape=(H, W),
        keypoints=kpts[None].astype(np.float32),
        keypoints_visible=np.ones((1, 9), np.float32),
        keypoints_depth=points[None, :, 2].copy(),
        keypoints_3d=points[None].copy(),
        camera_intrinsics=K.copy(),
        bbox=np.array([[0, 0, W, H]], np.float32),
        bbox_center=np.array([[W / 2, H / 2]], np.float32),
        flip_indices=parse_pose_metainfo(flip_indices)['flip_indices'])


def test_flip_keeps_a_consistent_right_handed_box():
    before = _results(OBJECTRON_METAINFO)
    flip = TRANSFORMS.build(dict(type='RandomBoxFlip', prob=1.0))
    after = flip.transform(dict(before, keypoints=before['keypoints'].copy()))
    assert after['flip'] and X_MIRROR == (0, 5, 6, 7, 8, 1, 2, 3, 4)
    np.testing.assert_array_equal(after['img'], before['img'][:, ::-1])
    # Pixels: mirrored (mmpose: x -> W - 1 - x) and relabelled by the x-swap.
    expected = before['keypoints'][0][list(X_MIRROR)] * [-1, 1] + [W - 1, 0]
    np.testing.assert_allclose(after['keypoints'][0], expected, atol=1e-4)
    np.testing.assert_allclose(after['keypoints_depth'][0],
                               before['keypoints_depth'][0][list(X_MIRROR)])
    # The new intrinsics project the new 3D points onto the new pixels.
    np.testing.assert_allclose(
        project_points(after['keypoints_3d'][0], after['camera_intrinsics']),
        after['keypoints'][0],
        atol=1e-4)
    # Still a right-handed box with the same size, and its top (+y) still up.
    rot_before, _, size_before = fit_box(before['keypoints_3d'][0])
    rot_after, _, size_after = fit_box(after['keypoints_3d'][0])
    assert np.linalg.det(rot_after) == pytest.approx(1, abs=1e-9)
    np.testing.assert_allclose(size_after, size_before, atol=1e-12)
    np.testing.assert_allclose(rot_after[:, 1], rot_before[:, 1], atol=1e-12)


def test_without_the_swap_a_flip_would_make_a_mirror_box():
    """Control: mirroring the 3D points without relabelling the corners gives a
    left-handed "box" (what the identity flip_indices of the bottle set would do)."""
    points = _results(OBJECTRON_METAINFO)['keypoints_3d'][0] * [-1, 1, 1]
    assert np.linalg.det(fit_box(points)[0]) == pytest.approx(-1, abs=1e-9)
    flip = TRANSFORMS.build(dict(type='RandomBoxFlip', prob=1.0))
    with pytest.raises(ValueError, match='RandomBoxFlip needs flip_indices'):
        flip.transform(_results(BOTTLE_METAINFO))


def test_no_flip_leaves_everything():
    before = _results(OBJECTRON_METAINFO)
    after = TRANSFORMS.build(dict(type='RandomBoxFlip', prob=0.0)).transform(dict(before))
    assert not after['flip']
    np.testing.assert_array_equal(after['keypoints_3d'], before['keypoints_3d'])


def test_vertical_flip_is_refused():
    with pytest.raises(ValueError, match="direction must be 'horizontal'"):
        TRANSFORMS.build(dict(type='RandomBoxFlip', direction='vertical'))

"""Lifting (pixels + depth + intrinsics -> camera points), projection, Objectron's box fit."""
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from keypose_ext.objectron.box3d import (AXIS_EDGES, UNIT_BOX, box_from_transformation, box_volume,
                                         fit_box, lift_keypoints, project_points)

K = np.array([[500.0, 0, 320], [0, 480.0, 240], [0, 0, 1]])


def test_lift_known_answer_and_round_trip():
    # (u, v) = (820, 240) at z = 2: x = (820 - 320) / 500 * 2 = 2, y = 0.
    np.testing.assert_allclose(lift_keypoints([[820, 240]], [2.0], K), [[2, 0, 2]])
    rng = np.random.default_rng(0)
    points = rng.uniform([-0.5, -0.5, 0.3], [0.5, 0.5, 2], (4, 9, 3))
    pixels = project_points(points, K)
    np.testing.assert_allclose(lift_keypoints(pixels, points[..., 2], K), points, atol=1e-12)
    # Per-sample intrinsics broadcast over the batch.
    ks = np.stack([K, 2 * K - np.diag([0, 0, 1])] * 2)
    pixels = np.stack([project_points(p, k) for p, k in zip(points, ks)])
    np.testing.assert_allclose(lift_keypoints(pixels, points[..., 2], ks), points, atol=1e-12)


def test_lift_range_depth():
    point = np.array([0.3, -0.4, 1.2])
    got = lift_keypoints(
        project_points(point[None], K), [np.linalg.norm(point)], K, depth_type='range')
    np.testing.assert_allclose(got[0], point, atol=1e-12)


def test_bad_inputs():
    with pytest.raises(ValueError, match='fx, fy > 0'):
        lift_keypoints([[1, 2]], [1], np.diag([0, 1, 1]))
    with pytest.raises(ValueError, match=r'\(\.\.\., 3, 3\)'):
        lift_keypoints([[1, 2]], [1], np.eye(2))
    with pytest.raises(ValueError, match='depth_type'):
        lift_keypoints([[1, 2]], [1], K, depth_type='disparity')
    with pytest.raises(ValueError, match=r'\(\.\.\., K, 2\)'):
        lift_keypoints([[1, 2, 3]], [1], K)


def test_template_order_and_edges():
    assert UNIT_BOX.shape == (9, 3) and not UNIT_BOX[0].any()
    for axis, edges in enumerate(AXIS_EDGES):
        assert len(edges) == 4
        for a, b in edges:
            d = np.abs(UNIT_BOX[a] - UNIT_BOX[b])
            assert d[axis] == 1 and d.sum() == 1


def test_fit_recovers_a_rigid_box():
    rot = Rotation.from_rotvec([0.3, -0.7, 1.1]).as_matrix()
    box = box_from_transformation(rot, [0.1, -0.2, 1.5], [0.08, 0.25, 0.1])
    r, t, s = fit_box(box)
    np.testing.assert_allclose(r, rot, atol=1e-12)
    np.testing.assert_allclose(t, [0.1, -0.2, 1.5], atol=1e-12)
    np.testing.assert_allclose(s, [0.08, 0.25, 0.1], atol=1e-12)
    assert box_volume(box) == pytest.approx(0.08 * 0.25 * 0.1, rel=1e-12)

"""Objectron's exact 3D IoU (polygon clipping + convex hull), checked independently.

Known answers, plus random rigid boxes against a different exact method: each box
as 6 half-spaces, their intersection polytope from scipy's HalfspaceIntersection,
its volume from ConvexHull.
"""
import numpy as np
import pytest
from scipy.optimize import linprog
from scipy.spatial import ConvexHull, HalfspaceIntersection
from scipy.spatial.transform import Rotation

from keypose_ext.objectron.box3d import box_from_transformation
from keypose_ext.objectron.iou3d import box_iou_3d, clip_polygon


def _box(size=(1, 1, 1), centre=(0, 0, 2), rotation=np.eye(3)):
    return box_from_transformation(rotation, centre, size)


def _halfspaces(rotation, centre, size):
    """6 rows [n, -n·p] with n·x + c <= 0 inside the box."""
    rows = []
    for axis in range(3):
        for sign in (1, -1):
            n = sign * rotation[:, axis]
            p = np.asarray(centre) + n * size[axis] / 2
            rows.append(np.r_[n, -n @ p])
    return np.array(rows)


def _reference_iou(a, b):
    """Exact IoU of two rigid boxes (rotation, centre, size) by half-spaces."""
    hs = np.vstack([_halfspaces(*a), _halfspaces(*b)])
    # An interior point: the Chebyshev centre by a small LP (infeasible: disjoint).
    norms = np.linalg.norm(hs[:, :3], axis=1)
    res = linprog([0, 0, 0, -1],
                  A_ub=np.c_[hs[:, :3], norms],
                  b_ub=-hs[:, 3],
                  bounds=[(None, None)] * 3 + [(0, None)])
    if not res.success or res.x[3] < 1e-9:
        return 0.0
    inter = ConvexHull(HalfspaceIntersection(hs, res.x[:3]).intersections).volume
    va, vb = np.prod(a[2]), np.prod(b[2])
    return inter / (va + vb - inter)


def test_known_answers():
    unit = _box()
    assert box_iou_3d(unit, unit) == pytest.approx(1, abs=1e-12)
    assert box_iou_3d(unit, unit + [0.5, 0, 0]) == pytest.approx(1 / 3, abs=1e-12)
    assert box_iou_3d(unit, unit + [2, 0, 0]) == 0
    assert box_iou_3d(unit, unit + [1, 0, 0]) == 0  # touching faces: no volume
    # A cube turned 45 degrees about its vertical axis: the regular-octagon prism.
    turned = _box(rotation=Rotation.from_euler('y', 45, degrees=True).as_matrix())
    assert box_iou_3d(unit, turned) == pytest.approx(1 / np.sqrt(2), abs=1e-9)
    # Nested: a half-size box inside.
    assert box_iou_3d(unit, _box(size=(0.5, 1, 1))) == pytest.approx(0.5, abs=1e-12)


@pytest.mark.parametrize('seed', range(3))
def test_random_rigid_boxes_match_halfspace_intersection(seed):
    rng = np.random.default_rng(seed)
    overlapping = 0
    for i in range(40):
        ra = Rotation.random(random_state=rng.integers(1 << 30)).as_matrix()
        rb = (Rotation.from_rotvec(rng.normal(0, 0.4, 3)) * Rotation.from_matrix(ra)).as_matrix()
        sa = rng.uniform(0.05, 0.4, 3)
        sb = sa * rng.uniform(0.7, 1.3, 3)
        ca = rng.normal(0, 0.2, 3) + [0, 0, 1]
        cb = ca + rng.normal(0, 0.06, 3)
        a, b = (ra, ca, sa), (rb, cb, sb)
        got = box_iou_3d(box_from_transformation(*a), box_from_transformation(*b))
        assert got == pytest.approx(_reference_iou(a, b), abs=1e-6), i
        overlapping += got > 0.05
    assert overlapping >= 25  # the comparison is not all zeros


def test_symmetric_and_invariant_to_the_camera_frame():
    rng = np.random.default_rng(7)
    a = _box((0.1, 0.3, 0.1), (0.02, 0.0, 0.8), Rotation.from_rotvec([0.2, 0.5, 0.1]).as_matrix())
    b = a + rng.normal(0, 0.01, a.shape)  # a noisy, non-rigid prediction
    turn = Rotation.from_rotvec([0.3, -1.2, 2.0]).as_matrix()
    iou = box_iou_3d(a, b)
    assert 0.5 < iou < 1
    assert box_iou_3d(b, a) == pytest.approx(iou, abs=1e-9)
    assert box_iou_3d(a @ turn.T + 1, b @ turn.T + 1) == pytest.approx(iou, abs=1e-9)


def test_degenerate_boxes_give_zero():
    unit = _box()
    assert box_iou_3d(unit, np.zeros((9, 3))) == 0
    assert box_iou_3d(unit, np.full((9, 3), np.nan)) == 0


def test_clip_polygon_sutherland_hodgman():
    square = [np.array(p, float) for p in ((0, 0, 0), (2, 0, 0), (2, 2, 0), (0, 2, 0))]
    clipped = clip_polygon(square, 1.0, 1.0, 0)  # keep x >= 1
    assert sorted(map(tuple, np.round(clipped, 9))) == [(1, 0, 0), (1, 2, 0), (2, 0, 0), (2, 2, 0)]
    assert clip_polygon(square, 3.0, 1.0, 0) == []  # all behind
    on_plane = clip_polygon(square, 0.0, 1.0, 2)  # every vertex on the plane z = 0
    assert len(on_plane) == 4

"""3D boxes in Objectron's keypoint order: lifting, projection, 9-DoF fit, volume.

A box is 9 points ``(9, 3)``: 0 the centre, 1..8 the corners at
``BOX_CORNER_SIGNS[i] / 2`` of the size along the box's own axes (the order of
Objectron's ``box.py`` template and of ``BOTTLE_METAINFO``). Points are in a
camera frame in metres; the project's frames are OpenCV's (x right, y down,
z forward), see :mod:`keypose_ext.objectron.reader`.

The fit and the volume follow the definitions in Objectron's
``objectron/dataset/box.py`` (``Box.fit``, ``Box.volume``), which its 3D IoU
uses: the size along each axis is the mean length of the 4 edges along it;
rotation and translation are the least-squares affine map from the sized
template to the points; the volume is the parallelepiped spanned by corners
2, 3 and 5 around corner 1.
"""
from typing import Tuple

import numpy as np

from keypose_ext.datasets.bottle_metainfo import BOX_CORNER_SIGNS
from keypose_ext.utils.errors import UserValueError

NUM_KEYPOINTS = 9
# Corners at +-1/2 along each local axis; row 0 is the centre.
UNIT_BOX = np.asarray(BOX_CORNER_SIGNS, np.float64) / 2
# The 4 edges along each local axis (x, y, z): corners differing in that sign.
AXIS_EDGES = tuple(
    tuple((a, b) for a in range(1, 9) for b in range(a + 1, 9) if np.count_nonzero(
        UNIT_BOX[a] != UNIT_BOX[b]) == 1 and UNIT_BOX[a, axis] != UNIT_BOX[b, axis])
    for axis in range(3))
# Faces as 4 corners in cyclic order (Objectron's box.FACES): +x, -x, +y, -y, +z, -z.
FACES = np.array([[5, 6, 8, 7], [1, 3, 4, 2], [3, 7, 8, 4], [1, 2, 6, 5], [2, 4, 8, 6],
                  [1, 5, 7, 3]])


def _as_matrix(intrinsics) -> np.ndarray:
    k = np.asarray(intrinsics, np.float64)
    if k.shape[-2:] != (3, 3):
        raise UserValueError(f'intrinsics must be (..., 3, 3), got shape {k.shape}.')
    if not np.isfinite(k).all() or (k[..., 0, 0] <= 0).any() or (k[..., 1, 1] <= 0).any():
        raise UserValueError('intrinsics must be finite with fx, fy > 0, got '
                             f'{k.reshape(-1, 9)[0].tolist()}.')
    return k


def lift_keypoints(keypoints, depth, intrinsics, depth_type: str = 'z') -> np.ndarray:
    """Back-project pixels with depths into camera coordinates.

    Args:
        keypoints: (..., K, 2) pixels of the frame the intrinsics belong to.
        depth: (..., K) metres: the camera z of each point (``'z'``) or its
            distance from the camera centre (``'range'``).
        intrinsics: (3, 3) or (..., 3, 3) pinhole matrix
            ``[[fx, s, cx], [0, fy, cy], [0, 0, 1]]``.
        depth_type (str): ``'z'`` (the project's and Objectron's
            ``point_2d.depth``) or ``'range'``.

    Returns:
        np.ndarray: (..., K, 3) points ``z · K⁻¹ [u, v, 1]`` in metres.
    """
    kpts = np.asarray(keypoints, np.float64)
    depth = np.asarray(depth, np.float64)
    k = _as_matrix(intrinsics)
    if kpts.shape[-1] != 2 or depth.shape != kpts.shape[:-1]:
        raise UserValueError(f'lift_keypoints: keypoints {kpts.shape} must be (..., K, 2) '
                             f'and depth {depth.shape} (..., K).')
    homog = np.concatenate([kpts, np.ones_like(kpts[..., :1])], axis=-1)
    rays = np.einsum('...ij,...kj->...ki', np.linalg.inv(k), homog)  # z = 1
    if depth_type == 'z':
        return rays * depth[..., None]
    if depth_type == 'range':
        return rays * (depth / np.linalg.norm(rays, axis=-1))[..., None]
    raise UserValueError(f"depth_type must be 'z' or 'range', got {depth_type!r}.")


def project_points(points, intrinsics) -> np.ndarray:
    """(..., K, 3) camera points -> (..., K, 2) pixels (pinhole, no distortion)."""
    pts = np.asarray(points, np.float64)
    proj = np.einsum('...ij,...kj->...ki', _as_matrix(intrinsics), pts)
    return proj[..., :2] / proj[..., 2:]


def scaled_unit_box(scale) -> np.ndarray:
    """(9, 3) centre + corners of an axis-aligned box of size ``scale``."""
    return UNIT_BOX * np.asarray(scale, np.float64)


def box_from_transformation(rotation, translation, scale) -> np.ndarray:
    """(9, 3) points ``R · (scale ⊙ template) + t``."""
    rotation = np.asarray(rotation, np.float64).reshape(3, 3)
    return scaled_unit_box(scale) @ rotation.T + np.asarray(translation, np.float64).reshape(3)


def fit_box(vertices) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """9-DoF parameters of a (possibly noisy) box, as Objectron's ``Box.fit``.

    Args:
        vertices: (9, 3) centre + corners.

    Returns:
        tuple: ``rotation`` (3, 3) (the least-squares linear part, not
        re-orthogonalised, as in Objectron), ``translation`` (3,) and
        ``scale`` (3,), the mean edge length along each axis.
    """
    v = np.asarray(vertices, np.float64).reshape(NUM_KEYPOINTS, 3)
    scale = np.array(
        [np.mean([np.linalg.norm(v[a] - v[b]) for a, b in AXIS_EDGES[axis]]) for axis in range(3)])
    system = np.concatenate([scaled_unit_box(scale), np.ones((NUM_KEYPOINTS, 1))], axis=1)
    solution = np.linalg.lstsq(system, v, rcond=None)[0]  # (4, 3): v = [x 1] @ solution
    return solution[:3, :3].T, solution[3, :3], scale


def box_volume(vertices) -> float:
    """Volume of the parallelepiped on corner 1 and its neighbours 2, 3, 5."""
    v = np.asarray(vertices, np.float64).reshape(NUM_KEYPOINTS, 3)
    return float(abs(np.linalg.det(np.stack([v[2] - v[1], v[3] - v[1], v[5] - v[1]]))))

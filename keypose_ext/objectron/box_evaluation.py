"""Objectron's per-box evaluation: which boxes count, 2D error, viewpoint, AP.

Transcribed from the definitions in Objectron's ``objectron/dataset/eval.py``
(``Evaluator``) and ``metrics.py`` (``HitMiss``, ``AveragePrecision``):

- an annotated box is evaluated when its ``visibility > 0.1``, its centre
  projects strictly inside the frame (normalised ``0 < x, y < 1``) and it lies
  in front of the camera (Objectron: ``point_3d`` centre z < 0; the OpenCV
  frames of this project: z > 0);
- 2D error: mean over the 8 corners of the L2 distance between predicted and
  true normalised image points (``x / W, y / H``);
- viewpoint: the camera centre in the box's own frame (least-squares affine
  map from the box to its template sized by three edges), as azimuth
  ``atan2(z, x)`` and elevation ``atan2(y, hypot(x, z))`` in degrees; the
  azimuth error wraps at 180 degrees;
- AP: every evaluated box is a hit at a threshold when ``IoU >= threshold``;
  hits and misses are accumulated in evaluation order (no sorting by score:
  Objectron's predictions have none), and precision/recall are integrated as
  in Pascal VOC 2012 (monotone precision envelope, sum over recall steps).

The IoU and the viewpoint depend on the boxes alone, so they are the same in
Objectron's camera axes and in the OpenCV axes used here (a rotation of the
camera frame moves both boxes alike).
"""
import math
from typing import Sequence, Tuple

import numpy as np

from .box3d import NUM_KEYPOINTS, UNIT_BOX

VISIBILITY_THRESHOLD = 0.1


def is_evaluated(visibility: float, centre_norm, centre_z: float) -> bool:
    """Objectron's filter for an annotated box.

    Args:
        visibility (float): The annotation's visibility.
        centre_norm: (2,) true centre keypoint, normalised to [0, 1].
        centre_z (float): True centre depth along the OpenCV camera z axis.
    """
    x, y = float(centre_norm[0]), float(centre_norm[1])
    return bool(visibility > VISIBILITY_THRESHOLD and 0 < x < 1 and 0 < y < 1 and centre_z > 0)


def projection_error_2d(pred_norm, gt_norm) -> float:
    """Mean L2 distance of corners 1..8 in normalised coordinates, (9, 2) each."""
    pred = np.asarray(pred_norm, np.float64).reshape(NUM_KEYPOINTS, 2)
    gt = np.asarray(gt_norm, np.float64).reshape(NUM_KEYPOINTS, 2)
    return float(np.mean(np.linalg.norm(pred[1:] - gt[1:], axis=1)))


def camera_in_box_frame(vertices) -> np.ndarray:
    """(3,) the camera centre in the box's template frame (up to the box's scale).

    The box's size is read from three edges at corner 1 (to corners 5, 3, 2);
    the affine map ``M`` with ``M [v; 1] ≈ [size ⊙ template; 1]`` is solved in
    closed form by least squares, and ``M`` applied to the camera centre
    (the origin) is its translation column.
    """
    v = np.asarray(vertices, np.float64).reshape(NUM_KEYPOINTS, 3)
    size = np.array(
        [np.linalg.norm(v[5] - v[1]),
         np.linalg.norm(v[3] - v[1]),
         np.linalg.norm(v[2] - v[1])])
    template_h = np.concatenate([(UNIT_BOX * size).T, np.ones((1, NUM_KEYPOINTS))])
    camera_h = np.concatenate([v.T, np.ones((1, NUM_KEYPOINTS))])
    affine = (template_h @ camera_h.T) @ np.linalg.inv(camera_h @ camera_h.T)
    return affine[:3, 3]


def viewpoint(vertices) -> Tuple[float, float]:
    """(azimuth, elevation) in degrees of the camera seen from the box."""
    x, y, z = camera_in_box_frame(vertices)
    return math.degrees(math.atan2(z, x)), math.degrees(math.atan2(y, math.hypot(x, z)))


def viewpoint_errors(pred_vertices, gt_vertices) -> Tuple[float, float]:
    """(azimuth error, elevation error) in degrees; the azimuth wraps at 180."""
    pred_azimuth, pred_elevation = viewpoint(pred_vertices)
    gt_azimuth, gt_elevation = viewpoint(gt_vertices)
    azimuth = abs(pred_azimuth - gt_azimuth)
    if azimuth > 180:
        azimuth = 360 - azimuth
    return azimuth, abs(pred_elevation - gt_elevation)


def average_precision(true_positives: Sequence[float], false_positives: Sequence[float],
                      num_instances: float) -> float:
    """VOC-style AP of per-frame hit/miss counts taken in evaluation order.

    Args:
        true_positives: (F,) hits per evaluated frame.
        false_positives: (F,) misses per evaluated frame.
        num_instances (float): Annotated instances in those frames (> 0).

    Returns:
        float: The area under the precision envelope over recall.
    """
    if num_instances <= 0:
        raise ValueError('average_precision needs at least one instance.')
    tp = np.cumsum(np.asarray(true_positives, np.float64))
    fp = np.cumsum(np.asarray(false_positives, np.float64))
    recall = np.concatenate([[0.0], tp / num_instances, [1.0]])
    counted = tp + fp
    precision = np.divide(tp, counted, out=np.zeros_like(tp), where=counted != 0)
    precision = np.concatenate([[0.0], precision, [0.0]])
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    steps = np.nonzero(recall[1:] != recall[:-1])[0] + 1
    return float(np.sum((recall[steps] - recall[steps - 1]) * envelope[steps]))

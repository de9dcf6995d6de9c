"""Objectron's box filter, 2D error, viewpoint and AP, against known answers and
independent formulas."""
import math

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from keypose_ext.objectron.box3d import box_from_transformation
from keypose_ext.objectron.box_evaluation import (average_precision, camera_in_box_frame,
                                                  is_evaluated, projection_error_2d, viewpoint,
                                                  viewpoint_errors)


def test_filter():
    assert is_evaluated(0.5, (0.5, 0.5), 1.0)
    assert not is_evaluated(0.1, (0.5, 0.5), 1.0)  # visibility must exceed 0.1
    assert not is_evaluated(0.5, (0.0, 0.5), 1.0)  # strictly inside
    assert not is_evaluated(0.5, (0.5, 1.2), 1.0)
    assert not is_evaluated(0.5, (0.5, 0.5), -0.3)  # behind the camera


def test_2d_error_ignores_the_centre():
    gt = np.zeros((9, 2))
    pred = np.zeros((9, 2))
    pred[0] = 5  # the centre does not count
    pred[1:, 0] = 0.3
    pred[1:, 1] = 0.4
    assert projection_error_2d(pred, gt) == pytest.approx(0.5)


def test_viewpoint_of_rigid_boxes_is_the_camera_direction_in_the_box_frame():
    rng = np.random.default_rng(0)
    for _ in range(20):
        rot = Rotation.random(random_state=rng.integers(1 << 30)).as_matrix()
        t = rng.normal(0, 0.3, 3) + [0, 0, 1.5]
        s = rng.uniform(0.05, 0.5, 3)
        box = box_from_transformation(rot, t, s)
        # Camera centre (origin) in the box frame: R^T (0 - t).
        cam = rot.T @ -t
        np.testing.assert_allclose(camera_in_box_frame(box), cam, atol=1e-9)
        azimuth, elevation = viewpoint(box)
        assert azimuth == pytest.approx(math.degrees(math.atan2(cam[2], cam[0])), abs=1e-6)
        assert elevation == pytest.approx(
            math.degrees(math.atan2(cam[1], math.hypot(cam[0], cam[2]))), abs=1e-6)


def test_viewpoint_known_answers_and_wrap():
    # Axis-aligned box 2 m ahead (OpenCV z): the camera is at -z of the box frame.
    box = box_from_transformation(np.eye(3), [0, 0, 2], [0.2, 0.2, 0.2])
    assert viewpoint(box) == pytest.approx((-90.0, 0.0))
    # Turned about y by -91 and -89 degrees: azimuths 179 and -179, 2 degrees apart.
    a = box_from_transformation(
        Rotation.from_euler('y', -91, degrees=True).as_matrix(), [0, 0, 2], [0.2, 0.2, 0.2])
    b = box_from_transformation(
        Rotation.from_euler('y', -89, degrees=True).as_matrix(), [0, 0, 2], [0.2, 0.2, 0.2])
    az_a, az_b = viewpoint(a)[0], viewpoint(b)[0]
    assert abs(az_a - az_b) > 180  # on either side of +-180
    azimuth_error, elevation_error = viewpoint_errors(a, b)
    assert azimuth_error == pytest.approx(2)
    assert elevation_error == pytest.approx(0, abs=1e-9)
    # Tilting the box by 20 degrees about x raises the camera by 20 degrees.
    c = box_from_transformation(
        Rotation.from_euler('x', 20, degrees=True).as_matrix(), [0, 0, 2], [0.2, 0.2, 0.2])
    assert viewpoint_errors(c, box)[1] == pytest.approx(20, abs=1e-6)


def _voc_ap_loops(hits, n):
    """Objectron's AveragePrecision for one prediction per frame, written as loops."""
    tp = fp = 0
    recall, precision = [0.0], [0.0]
    for h in hits:
        tp += h
        fp += 1 - h
        recall.append(tp / n)
        precision.append(tp / (tp + fp))
    recall.append(1.0)
    precision.append(0.0)
    for i in range(len(precision) - 2, -1, -1):
        precision[i] = max(precision[i], precision[i + 1])
    return sum((recall[i] - recall[i - 1]) * precision[i] for i in range(1, len(recall))
               if recall[i] != recall[i - 1])


def test_average_precision_known_answers_and_loops():

    def ap(hits):
        hits = np.asarray(hits, float)
        return average_precision(hits, 1 - hits, len(hits))

    assert ap([1, 1, 1]) == 1
    assert ap([0, 0]) == 0
    assert ap([1, 0]) == pytest.approx(0.5)  # order matters, as in Objectron
    assert ap([0, 1]) == pytest.approx(0.25)
    rng = np.random.default_rng(1)
    for _ in range(20):
        hits = (rng.random(rng.integers(1, 30)) > rng.random()).astype(float)
        assert ap(hits) == pytest.approx(_voc_ap_loops(hits, len(hits)), abs=1e-12)
    with pytest.raises(ValueError):
        average_precision([], [], 0)

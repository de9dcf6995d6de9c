"""Exact 3D IoU of two oriented boxes, by Objectron's method.

Objectron (``objectron/dataset/iou.py``) intersects two boxes by clipping
polygons: each box in turn is made axis-aligned (its fitted pose inverted, see
:func:`~keypose_ext.objectron.box3d.fit_box`); the other box's 6 faces, in that
frame, are clipped against the 6 planes of the aligned box with the
Sutherland-Hodgman algorithm (Ericson, *Real-Time Collision Detection*, p. 370,
points within 1e-6 of a plane count as on it), and the other box's 9 points
that lie inside are added. All these points, mapped back to the camera frame,
span the intersection; its volume is that of their convex hull (scipy's
``ConvexHull``). The union is ``volume(a) + volume(b) - intersection`` with
:func:`~keypose_ext.objectron.box3d.box_volume`.

Two cases where Objectron's code raises are given a value here: boxes whose
fitted pose is singular (e.g. a prediction collapsed to a point) and
intersections with no volume (boxes touching at a face, edge or corner) both
give IoU 0.
"""
from typing import List

import numpy as np
from scipy.spatial import ConvexHull, QhullError

from .box3d import FACES, NUM_KEYPOINTS, box_from_transformation, box_volume, fit_box

PLANE_EPSILON = 1e-6
_FRONT, _ON, _BEHIND = 1, 0, -1


def _side(point: np.ndarray, plane_value: float, normal: float, axis: int) -> int:
    """Which side of the plane ``x[axis] = plane_value`` (facing ``normal``)."""
    distance = normal * (point[axis] - plane_value)
    if distance > PLANE_EPSILON:
        return _FRONT
    if distance < -PLANE_EPSILON:
        return _BEHIND
    return _ON


def _crossing(plane_value: float, start: np.ndarray, end: np.ndarray, axis: int) -> np.ndarray:
    """Where the segment start -> end meets the plane (linear interpolation)."""
    alpha = (end[axis] - plane_value) / (end[axis] - start[axis])
    return alpha * start + (1.0 - alpha) * end


def clip_polygon(polygon: List[np.ndarray], plane_value: float, normal: float,
                 axis: int) -> List[np.ndarray]:
    """Keep the part of ``polygon`` in front of an axis-aligned plane.

    Args:
        polygon (list[np.ndarray]): 3D vertices (3,) in cyclic order.
        plane_value (float): The plane is ``x[axis] == plane_value``.
        normal (float): +1 keeps ``x[axis] >= plane_value``, -1 keeps ``<=``.
        axis (int): 0, 1 or 2.

    Returns:
        list[np.ndarray]: The clipped polygon (the input itself when every
        vertex lies on the plane, an empty list for fewer than 2 vertices).
    """
    if len(polygon) < 2:
        return []
    clipped: List[np.ndarray] = []

    def keep_start(start: np.ndarray) -> None:
        # A vertex on the plane is emitted once even when two edges touch it.
        if not clipped or not np.array_equal(clipped[-1], start):
            clipped.append(start)

    all_on_plane = True
    for index, end in enumerate(polygon):
        start = polygon[index - 1]
        side_start = _side(start, plane_value, normal, axis)
        side_end = _side(end, plane_value, normal, axis)
        if side_end == _ON:
            if side_start != _ON:
                clipped.append(end)
            continue
        all_on_plane = False
        if side_start == -side_end:  # the edge crosses the plane
            clipped.append(_crossing(plane_value, start, end, axis))
        elif side_start == _ON:
            keep_start(start)
        if side_end == _FRONT:
            clipped.append(end)
    return list(polygon) if all_on_plane else clipped


def _clip_to_aligned_box(polygon: List[np.ndarray], aligned: np.ndarray) -> List[np.ndarray]:
    """Clip against the 6 planes of an axis-aligned box (corner 1 = min, 8 = max)."""
    for axis in range(3):
        polygon = clip_polygon(polygon, aligned[1, axis], 1.0, axis)
        polygon = clip_polygon(polygon, aligned[8, axis], -1.0, axis)
    return polygon


def _inside_test(vertices: np.ndarray):
    """A test for "``point`` lies in the box fitted to ``vertices``" (faces included)."""
    rotation, translation, scale = fit_box(vertices)
    pose = np.eye(4)
    pose[:3, :3], pose[:3, 3] = rotation, translation
    inverse = np.linalg.inv(pose)

    def inside(point: np.ndarray) -> bool:
        local = inverse[:3, :3] @ point + inverse[:3, 3]
        return bool(np.all(np.abs(local) <= scale / 2.0))

    return inside


def _transform(vertices: np.ndarray, transform: np.ndarray) -> np.ndarray:
    """The box fitted to ``vertices`` moved by a 4x4 ``transform`` (its size kept)."""
    rotation, translation, scale = fit_box(vertices)
    return box_from_transformation(transform[:3, :3] @ rotation,
                                   transform[:3, 3] + transform[:3, :3] @ translation, scale)


def intersection_points(source: np.ndarray, template: np.ndarray) -> List[np.ndarray]:
    """Points of ``template ∩ source`` found from ``source``'s side.

    Args:
        source (np.ndarray): (9, 3) box made axis-aligned.
        template (np.ndarray): (9, 3) box whose faces and points are clipped.

    Returns:
        list[np.ndarray]: (3,) points in the boxes' camera frame.
    """
    rotation, translation, _ = fit_box(source)
    pose = np.eye(4)
    pose[:3, :3], pose[:3, 3] = rotation, translation
    to_source = np.linalg.inv(pose)
    aligned = _transform(source, to_source)
    template_local = _transform(template, to_source)
    points = []
    for face in FACES:
        for point in _clip_to_aligned_box([template_local[i] for i in face], aligned):
            points.append(rotation @ point + translation)
    inside = _inside_test(aligned)
    for i in range(NUM_KEYPOINTS):
        if inside(template_local[i]):
            points.append(rotation @ template_local[i] + translation)
    return points


def box_iou_3d(box_a, box_b) -> float:
    """Exact IoU of two oriented 3D boxes (Objectron's ``IoU.iou``).

    Args:
        box_a: (9, 3) centre + corners, Objectron order, metres.
        box_b: (9, 3) the same for the other box, same camera frame.

    Returns:
        float: Intersection volume / union volume, in [0, 1].
    """
    a = np.asarray(box_a, np.float64).reshape(NUM_KEYPOINTS, 3)
    b = np.asarray(box_b, np.float64).reshape(NUM_KEYPOINTS, 3)
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        return 0.0
    try:
        points = intersection_points(a, b) + intersection_points(b, a)
    except np.linalg.LinAlgError:  # a degenerate (e.g. collapsed) box
        return 0.0
    if not points:
        return 0.0
    try:
        intersection = ConvexHull(np.asarray(points)).volume
    except (QhullError, ValueError):  # flat or too few points: no volume
        return 0.0
    union = box_volume(a) + box_volume(b) - intersection
    return float(intersection / union) if union > 0 else 0.0

"""Read Objectron ``annotation.pbdata`` files into per-frame box keypoints.

An Objectron annotation file is one serialized ``Sequence`` message (schema in
``annotation_data.proto`` next to this file). Each ``FrameAnnotation`` holds,
per annotated object, 9 ``AnnotatedKeyPoint`` s (0 = box centre, 1..8 = box
corners) with

- ``point_2d``: x, y normalised to [0, 1] over the frame (top-left origin) and
  ``depth``, the metric distance along the camera's viewing axis;
- ``point_3d``: the keypoint in the camera frame in metres, ARKit convention
  (x right, y up, camera looking along -z).

:func:`read_objectron_annotations` turns these into pixels and metres in the
project's convention: ``keypoints`` (9, 2) pixels = normalised × image size,
``depth`` (9,) metres, ``keypoints_3d`` (9, 3) in OpenCV camera coordinates
(x right, y down, z forward), i.e. ``(x, -y, -z)`` of Objectron's
``point_3d``, so that ``keypoints_3d[:, 2]`` is the depth.
"""
import os
from dataclasses import dataclass
from typing import List, Optional

import numpy as np
from google.protobuf.message import DecodeError

from . import annotation_data_pb2

NUM_BOX_KEYPOINTS = 9


@dataclass
class ObjectronFrame:
    """Box keypoints of one object in one frame.

    Attributes:
        frame_id (int): Index of the video frame.
        keypoints_norm (np.ndarray): (9, 2) x, y normalised to [0, 1].
        depth (np.ndarray): (9,) depth along the camera axis in metres.
        keypoints_3d (np.ndarray | None): (9, 3) OpenCV camera coordinates in
            metres, or None when the file has no ``point_3d``.
        visibility (float): Objectron's per-annotation visibility.
        image_size (tuple | None): (width, height) the pixels refer to: the
            size passed to the reader, else the frame camera's resolution.
        keypoints (np.ndarray | None): (9, 2) pixels (normalised ×
            ``image_size``), None when no size is known.
    """
    frame_id: int
    keypoints_norm: np.ndarray
    depth: np.ndarray
    keypoints_3d: Optional[np.ndarray]
    visibility: float
    image_size: Optional[tuple] = None
    keypoints: Optional[np.ndarray] = None

    def keypoints_pixels(self, width: int, height: int) -> np.ndarray:
        """(9, 2) keypoints in pixels of a ``width`` × ``height`` frame."""
        return self.keypoints_norm * np.array([width, height], np.float32)


def load_objectron_sequence(path: str) -> 'annotation_data_pb2.Sequence':
    """Parse ``path`` as a serialized Objectron ``Sequence`` message."""
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f'Objectron annotation file not found: {path!r}')
    with open(path, 'rb') as f:
        payload = f.read()
    sequence = annotation_data_pb2.Sequence()
    try:
        sequence.ParseFromString(payload)
    except DecodeError as e:
        raise ValueError(
            f'{path}: not a serialized Objectron Sequence ({e}). Pass the '
            "sequence's annotation.pbdata file, or use --format json for the "
            "project's JSON annotations.") from None
    if not sequence.frame_annotations:
        raise ValueError(
            f'{path}: the Objectron Sequence has no frame_annotations; an '
            'empty or non-Objectron file was given.')
    return sequence


def _pick_object_id(sequence, path: str, object_id: Optional[int]) -> int:
    known = [obj.id for obj in sequence.objects]
    if object_id is not None:
        if known and object_id not in known:
            raise ValueError(f'{path}: object id {object_id} is not in the '
                             f'sequence; its objects are {known}.')
        return object_id
    if known:
        return known[0]
    for frame in sequence.frame_annotations:
        for ann in frame.annotations:
            return ann.object_id
    raise ValueError(f'{path}: no object is annotated in any frame.')


def read_objectron_annotations(path: str,
                               object_id: Optional[int] = None,
                               image_size: Optional[tuple] = None
                               ) -> List[ObjectronFrame]:
    """Read the box keypoints of one object in every annotated frame.

    Args:
        path (str): An Objectron ``annotation.pbdata`` file.
        object_id (int, optional): Which object to read (``Object.id``).
            Defaults to the first object of the sequence.
        image_size (tuple, optional): (width, height) of the video frames,
            used to turn normalised points into pixels. Defaults to each
            frame camera's ``image_resolution_width/height``.

    Returns:
        list[ObjectronFrame]: One entry per ``FrameAnnotation``, in file
        order.

    Raises:
        ValueError: If a frame lacks the object, a keypoint set is not 9
            points, or a value is not finite; the message names the frame.
    """
    sequence = load_objectron_sequence(path)
    object_id = _pick_object_id(sequence, path, object_id)

    frames = []
    for frame in sequence.frame_annotations:
        anns = [a for a in frame.annotations if a.object_id == object_id]
        if not anns:
            raise ValueError(
                f'{path}: frame_id {frame.frame_id} has no annotation for '
                f'object id {object_id}; every frame of the video needs the '
                'box (choose another object with --object-id).')
        ann = anns[0]
        kpts = sorted(ann.keypoints, key=lambda k: k.id)
        if len(kpts) != NUM_BOX_KEYPOINTS:
            raise ValueError(
                f'{path}: frame_id {frame.frame_id}, object id {object_id} '
                f'has {len(kpts)} keypoints, expected {NUM_BOX_KEYPOINTS} '
                '(box centre + 8 corners).')
        norm = np.array([[k.point_2d.x, k.point_2d.y] for k in kpts],
                        dtype=np.float32)
        depth = np.array([k.point_2d.depth for k in kpts], dtype=np.float32)
        has_3d = any(k.HasField('point_3d') for k in kpts)
        points_3d = None
        if has_3d:
            # ARKit camera frame -> OpenCV camera frame.
            points_3d = np.array(
                [[k.point_3d.x, -k.point_3d.y, -k.point_3d.z] for k in kpts],
                dtype=np.float32)
        values = [norm, depth] + ([points_3d] if has_3d else [])
        if not all(np.isfinite(v).all() for v in values):
            raise ValueError(
                f'{path}: frame_id {frame.frame_id} has a NaN or infinite '
                'keypoint coordinate or depth.')
        size = tuple(image_size) if image_size is not None else None
        if (size is None and frame.HasField('camera')
                and frame.camera.image_resolution_width):
            size = (frame.camera.image_resolution_width,
                    frame.camera.image_resolution_height)
        frames.append(
            ObjectronFrame(
                frame_id=frame.frame_id,
                keypoints_norm=norm,
                depth=depth,
                keypoints_3d=points_3d,
                visibility=float(ann.visibility),
                image_size=size,
                keypoints=None if size is None else norm *
                np.array(size, np.float32)))
    return frames

"""Read Objectron ``annotation.pbdata`` files into per-frame box keypoints.

Over 300 lines because Objectron's frames are portrait while its cameras are landscape: the
orientation detection, the intrinsics swap and the per-object/empty-frame handling are each
documented beside the code that does them.

An Objectron annotation file is one serialized ``Sequence`` message (schema in
``annotation_data.proto`` next to this file). Each ``FrameAnnotation`` holds the
frame's ``ARCamera`` (intrinsics, resolution) and, per annotated object, 9
``AnnotatedKeyPoint`` s (0 = box centre, 1..8 = box corners) with

- ``point_2d``: x, y normalised to [0, 1] over the video frame (top-left
  origin) and ``depth`` in metres;
- ``point_3d``: the keypoint in Objectron's camera frame, in metres.

Objectron's videos are portrait (1440 x 1920) while its camera poses and
intrinsics are landscape (ARKit's sensor frame, 1920 x 1440): in the portrait
frame ``point_3d``'s x axis points down, y points right and the camera looks
along -z, and the intrinsics have (fx, cx) and (fy, cy) swapped (Objectron
issues #39 and #52, and its 3D-projection tutorial, which swaps x and y after
projecting with the intrinsics). The reader turns everything into the frame's
own OpenCV convention (x right, y down, z forward, intrinsics of the decoded
frame), so that ``K @ keypoints_3d`` projects onto ``keypoints``:

============  ====================  =======================================
orientation   ``keypoints_3d``      intrinsics ``K`` and frame size
============  ====================  =======================================
portrait      ``(y, x, -z)``        ``[[fy, 0, cy], [0, fx, cx]]``, (H, W)
landscape     ``(x, -y, -z)``       as stored, (W, H)
============  ====================  =======================================

(``x, y, z`` of ``point_3d``; ``fx, fy, cx, cy`` and the resolution ``W x H``
as the ``ARCamera`` stores them.) ``orientation='auto'`` (default) picks, per
file, the convention under which ``point_3d`` projects onto ``point_2d``:
real Objectron clips come out portrait, the landscape clips this project's
synthetic bottle writer makes come out landscape.

Frames that annotate no object are allowed (Objectron's schema says a frame
has between none and all of the sequence's objects):
:func:`read_objectron_clip` keeps them with no instances and
:func:`read_objectron_annotations` (one object) leaves them out.
"""
import os
import warnings
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from google.protobuf.message import DecodeError

from keypose_ext.utils.errors import UserFileNotFoundError, UserValueError
from . import annotation_data_pb2

NUM_BOX_KEYPOINTS = 9
ORIENTATIONS = ('auto', 'portrait', 'landscape')

# Objectron camera axes -> OpenCV axes of the decoded frame (rows: x, y, z).
CAMERA_TO_OPENCV = {
    'portrait': np.array([[0., 1., 0.], [1., 0., 0.], [0., 0., -1.]]),
    'landscape': np.diag([1., -1., -1.]),
}
# A convention whose projection misses point_2d by more than this RMS (in
# normalised units, i.e. 2 % of the frame) is reported as not fitting.
_FIT_WARN_RMS = 0.02


@dataclass
class ObjectronInstance:
    """One object's box keypoints in one frame.

    Attributes:
        object_id (int): ``ObjectAnnotation.object_id``.
        keypoints_norm (np.ndarray): (9, 2) x, y normalised to [0, 1].
        depth (np.ndarray): (9,) ``point_2d.depth`` in metres.
        keypoints_3d (np.ndarray | None): (9, 3) OpenCV camera coordinates of
            the frame in metres, None when the file has no ``point_3d``.
        visibility (float): Objectron's per-annotation visibility.
        keypoints (np.ndarray | None): (9, 2) pixels (normalised × the
            frame's ``image_size``), None when no size is known.
    """
    object_id: int
    keypoints_norm: np.ndarray
    depth: np.ndarray
    keypoints_3d: Optional[np.ndarray]
    visibility: float
    keypoints: Optional[np.ndarray] = None


@dataclass
class ObjectronClipFrame:
    """One ``FrameAnnotation``: the camera and every annotated object.

    Attributes:
        frame_id (int): Index of the video frame.
        instances (list[ObjectronInstance]): May be empty.
        image_size (tuple | None): (width, height) of the decoded frame: the
            size passed to the reader, else the camera resolution turned to
            the file's orientation.
        intrinsics (np.ndarray | None): (3, 3) pinhole matrix in pixels of
            ``image_size`` (OpenCV convention), None when the camera has no
            ``intrinsics``.
    """
    frame_id: int
    instances: List[ObjectronInstance] = field(default_factory=list)
    image_size: Optional[Tuple[int, int]] = None
    intrinsics: Optional[np.ndarray] = None


@dataclass
class ObjectronClip:
    """All frames of one ``annotation.pbdata``.

    Attributes:
        path (str): The file.
        orientation (str): ``'portrait'`` or ``'landscape'`` (see the module
            docstring), as given or as detected.
        object_ids (list[int]): ``Sequence.objects`` ids (or, when the file
            lists none, the ids seen in the frames), in file order.
        categories (dict): ``Object.id`` -> ``Object.category``.
        frames (list[ObjectronClipFrame]): One per ``FrameAnnotation``.
    """
    path: str
    orientation: str
    object_ids: List[int]
    categories: Dict[int, str]
    frames: List[ObjectronClipFrame]


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
            size passed to the reader, else the camera resolution turned to
            the file's orientation (portrait for real Objectron clips).
        keypoints (np.ndarray | None): (9, 2) pixels (normalised ×
            ``image_size``), None when no size is known.
        intrinsics (np.ndarray | None): (3, 3) intrinsics for ``image_size``.
        object_id (int | None): The object these keypoints belong to.
    """
    frame_id: int
    keypoints_norm: np.ndarray
    depth: np.ndarray
    keypoints_3d: Optional[np.ndarray]
    visibility: float
    image_size: Optional[tuple] = None
    keypoints: Optional[np.ndarray] = None
    intrinsics: Optional[np.ndarray] = None
    object_id: Optional[int] = None

    def keypoints_pixels(self, width: int, height: int) -> np.ndarray:
        """(9, 2) keypoints in pixels of a ``width`` × ``height`` frame."""
        return self.keypoints_norm * np.array([width, height], np.float32)


def load_objectron_sequence(path: str) -> 'annotation_data_pb2.Sequence':
    """Parse ``path`` as a serialized Objectron ``Sequence`` message."""
    if not os.path.isfile(path):
        raise UserFileNotFoundError(f'Objectron annotation file not found: {path!r}')
    with open(path, 'rb') as f:
        payload = f.read()
    sequence = annotation_data_pb2.Sequence()
    try:
        sequence.ParseFromString(payload)
    except DecodeError as e:
        raise UserValueError(f'{path}: not a serialized Objectron Sequence ({e}). Pass the '
                             "sequence's annotation.pbdata file, or use --format json for the "
                             "project's JSON annotations.") from None
    if not sequence.frame_annotations:
        raise UserValueError(f'{path}: the Objectron Sequence has no frame_annotations; an '
                             'empty or non-Objectron file was given.')
    return sequence


def _raw_instance(path: str, frame, ann) -> dict:
    """Arrays of one ``ObjectAnnotation`` in the file's own axes."""
    kpts = sorted(ann.keypoints, key=lambda k: k.id)
    where = f'{path}: frame_id {frame.frame_id}, object id {ann.object_id}'
    if len(kpts) != NUM_BOX_KEYPOINTS:
        raise UserValueError(f'{where} has {len(kpts)} keypoints, expected {NUM_BOX_KEYPOINTS} '
                             '(box centre + 8 corners).')
    norm = np.array([[k.point_2d.x, k.point_2d.y] for k in kpts], np.float64)
    depth = np.array([k.point_2d.depth for k in kpts], np.float64)
    points = None
    if any(k.HasField('point_3d') for k in kpts):
        points = np.array([[k.point_3d.x, k.point_3d.y, k.point_3d.z] for k in kpts], np.float64)
    if not all(
            np.isfinite(v).all()
            for v in (norm, depth) + ((points, ) if points is not None else ())):
        raise UserValueError(f'{where} has a NaN or infinite keypoint coordinate or depth.')
    return dict(
        object_id=ann.object_id,
        norm=norm,
        depth=depth,
        points=points,
        visibility=float(ann.visibility))


def fit_orientation(points_3d: np.ndarray, points_norm: np.ndarray) -> Dict[str, float]:
    """How well each convention explains ``point_2d`` from ``point_3d``.

    For each orientation the points are turned to OpenCV axes and
    ``u = a·x/z + b``, ``v = c·y/z + d`` is fitted by least squares (one
    pinhole camera for the whole clip, its intrinsics unknown); the wrong
    orientation regresses ``u`` on the wrong axis and fits badly.

    Args:
        points_3d (np.ndarray): (M, 3) ``point_3d`` in the file's axes.
        points_norm (np.ndarray): (M, 2) the matching ``point_2d.x, y``.

    Returns:
        dict: orientation -> RMS residual in normalised units (inf when there
        are fewer than 3 points in front of the camera, or the fitted focal
        lengths are not positive).
    """
    rms = {}
    for name, rot in CAMERA_TO_OPENCV.items():
        cam = points_3d @ rot.T
        front = cam[:, 2] > 1e-6
        if front.sum() < 3:
            rms[name] = float('inf')
            continue
        ratios = cam[front, :2] / cam[front, 2:]
        err, ok = [], True
        for axis in range(2):
            design = np.stack([ratios[:, axis], np.ones(len(ratios))], axis=1)
            coef = np.linalg.lstsq(design, points_norm[front, axis], rcond=None)[0]
            ok = ok and coef[0] > 0
            err.append(points_norm[front, axis] - design @ coef)
        rms[name] = float(np.sqrt(np.mean(np.square(err)))) if ok else float('inf')
    return rms


def _decide_orientation(path: str, raws: List[dict], orientation: str, resolution,
                        image_size) -> str:
    if orientation != 'auto':
        return orientation
    with_3d = [r for r in raws if r['points'] is not None]
    if with_3d:
        rms = fit_orientation(
            np.concatenate([r['points'] for r in with_3d]),
            np.concatenate([r['norm'] for r in with_3d]))
        best = min(rms, key=rms.get)
        if np.isfinite(rms[best]):
            if rms[best] > _FIT_WARN_RMS:
                warnings.warn(
                    f'{path}: point_3d does not project onto point_2d in either '
                    f'orientation (RMS {rms}); using {best!r}. Pass orientation= to choose.')
            return best
    # No 3D points to decide from: a frame whose aspect differs from the
    # camera's is portrait; otherwise Objectron's own captures are portrait.
    if resolution is not None and image_size is not None:
        return 'portrait' if (resolution[0] > resolution[1]) != (image_size[0]
                                                                 > image_size[1]) else 'landscape'
    return 'portrait'


def _frame_camera(frame, orientation: str,
                  image_size) -> Tuple[Optional[tuple], Optional[np.ndarray]]:
    """(width, height) and (3, 3) intrinsics of the decoded frame."""
    cam = frame.camera if frame.HasField('camera') else None
    resolution = None
    if cam is not None and cam.image_resolution_width and cam.image_resolution_height:
        resolution = (cam.image_resolution_width, cam.image_resolution_height)
        if orientation == 'portrait':
            resolution = resolution[::-1]
    size = tuple(int(s) for s in image_size) if image_size is not None else resolution
    intrinsics = None
    if cam is not None and len(cam.intrinsics) == 9:
        k = np.asarray(cam.intrinsics, np.float64).reshape(3, 3)
        if orientation == 'portrait':
            k = k[[1, 0, 2]][:, [1, 0, 2]]  # swap (fx, cx) with (fy, cy)
        if resolution is not None and size is not None:
            k = np.diag([size[0] / resolution[0], size[1] / resolution[1], 1.0]) @ k
        intrinsics = k
    return size, intrinsics


def read_objectron_clip(path: str,
                        image_size: Optional[Sequence[int]] = None,
                        orientation: str = 'auto') -> ObjectronClip:
    """Read every frame and every object of an Objectron annotation file.

    Args:
        path (str): An Objectron ``annotation.pbdata`` file.
        image_size (tuple, optional): (width, height) of the decoded video
            frames. Defaults to each camera's resolution turned to the
            orientation (1440 x 1920 for real, portrait, Objectron clips).
        orientation (str): ``'auto'``, ``'portrait'`` or ``'landscape'``.

    Returns:
        ObjectronClip: With one :class:`ObjectronClipFrame` per
        ``FrameAnnotation`` in file order; frames without objects are kept
        with an empty ``instances`` list.
    """
    if orientation not in ORIENTATIONS:
        raise UserValueError(f'orientation must be one of {ORIENTATIONS}, got {orientation!r}.')
    if image_size is not None and (len(image_size) != 2 or min(image_size) <= 0):
        raise UserValueError(f'image_size must be (width, height) > 0, got {image_size!r}.')
    sequence = load_objectron_sequence(path)
    raw_frames = [(frame, [_raw_instance(path, frame, a) for a in frame.annotations])
                  for frame in sequence.frame_annotations]
    resolution = None
    for frame, _ in raw_frames:
        if frame.camera.image_resolution_width and frame.camera.image_resolution_height:
            resolution = (frame.camera.image_resolution_width, frame.camera.image_resolution_height)
            break
    orientation = _decide_orientation(path, [r for _, rs in raw_frames for r in rs], orientation,
                                      resolution, image_size)
    rot = CAMERA_TO_OPENCV[orientation]

    frames = []
    for frame, raws in raw_frames:
        size, intrinsics = _frame_camera(frame, orientation, image_size)
        scale = None if size is None else np.array(size, np.float64)
        instances = [
            ObjectronInstance(
                object_id=r['object_id'],
                keypoints_norm=r['norm'],
                depth=r['depth'],
                keypoints_3d=None if r['points'] is None else r['points'] @ rot.T,
                visibility=r['visibility'],
                keypoints=None if scale is None else r['norm'] * scale) for r in raws
        ]
        frames.append(ObjectronClipFrame(frame.frame_id, instances, size, intrinsics))
    object_ids = [obj.id for obj in sequence.objects]
    if not object_ids:
        object_ids = sorted({i.object_id for f in frames for i in f.instances})
    return ObjectronClip(
        path=path,
        orientation=orientation,
        object_ids=object_ids,
        categories={obj.id: obj.category
                    for obj in sequence.objects},
        frames=frames)


def read_objectron_annotations(path: str,
                               object_id: Optional[int] = None,
                               image_size: Optional[tuple] = None,
                               orientation: str = 'auto') -> List[ObjectronFrame]:
    """Read the box keypoints of one object in every frame that annotates it.

    Args:
        path (str): An Objectron ``annotation.pbdata`` file.
        object_id (int, optional): Which object to read (``Object.id``).
            Defaults to the first object of the sequence.
        image_size (tuple, optional): (width, height) of the video frames,
            used to turn normalised points into pixels. Defaults to each
            frame camera's resolution turned to the orientation.
        orientation (str): See :func:`read_objectron_clip`.

    Returns:
        list[ObjectronFrame]: One entry per ``FrameAnnotation`` that holds the
        object, in file order. Frames without it are left out (Objectron's
        schema allows them); compare ``frame_id`` s to find them.

    Raises:
        UserValueError: If the object is unknown or in no frame, a keypoint
            set is not 9 points, or a value is not finite; the message names
            the file and the frame.
    """
    clip = read_objectron_clip(path, image_size=image_size, orientation=orientation)
    if object_id is not None:
        if clip.object_ids and object_id not in clip.object_ids:
            raise UserValueError(f'{path}: object id {object_id} is not in the '
                                 f'sequence; its objects are {clip.object_ids}.')
    elif clip.object_ids:
        object_id = clip.object_ids[0]
    else:
        raise UserValueError(f'{path}: no object is annotated in any frame.')
    frames = []
    for frame in clip.frames:
        for inst in frame.instances:
            if inst.object_id == object_id:
                frames.append(
                    ObjectronFrame(
                        frame_id=frame.frame_id,
                        keypoints_norm=inst.keypoints_norm.astype(np.float32),
                        depth=inst.depth.astype(np.float32),
                        keypoints_3d=None
                        if inst.keypoints_3d is None else inst.keypoints_3d.astype(np.float32),
                        visibility=inst.visibility,
                        image_size=frame.image_size,
                        keypoints=None
                        if inst.keypoints is None else inst.keypoints.astype(np.float32),
                        intrinsics=frame.intrinsics,
                        object_id=object_id))
                break
    if not frames:
        raise UserValueError(f'{path}: object id {object_id} is annotated in no frame.')
    return frames

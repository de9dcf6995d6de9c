"""Synthetic Objectron clips written as real Objectron clips are, for tests and demos.

A real Objectron clip is a portrait ``video.MOV`` (1440 x 1920) and an
``annotation.pbdata`` whose cameras are landscape (resolution 1920 x 1440,
intrinsics with (fx, cx) and (fy, cy) swapped, ``point_3d`` with x pointing
down and y right in the portrait frame, see :mod:`keypose_ext.objectron.reader`).
:func:`write_objectron_clip` renders the textured box of
:mod:`keypose_ext.testing.synthetic_bottle` into a portrait video and writes
its exact ground truth in that layout (``orientation='portrait'``), or in the
plain ARKit layout whose camera and frames share axes (``'landscape'``).
Options produce the awkward cases real clips have: frames without the object,
low visibility, a second object, no intrinsics, fewer annotations than frames.
:func:`make_objectron_multivideo` writes several clips in Objectron's folder
layout (``<category>/batch-<b>/<i>/``).
"""
import os
import os.path as osp
import tempfile
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from keypose_ext.datasets.bottle_metainfo import BOX_CORNER_SIGNS
from keypose_ext.objectron import annotation_data_pb2 as pb
from keypose_ext.objectron.reader import CAMERA_TO_OPENCV
from keypose_ext.testing.synthetic_bottle import (DEFAULT_BOX_SIZE, render_synthetic_bottle_video,
                                                  write_json_annotations)

# Swaps (x, y) rows and columns: portrait <-> landscape intrinsics.
_SWAP_XY = np.array([[0., 1., 0.], [1., 0., 0.], [0., 0., 1.]])


def stored_camera(intrinsics: np.ndarray, size: Tuple[int, int],
                  orientation: str) -> Tuple[np.ndarray, Tuple[int, int]]:
    """The ``ARCamera`` intrinsics and resolution of a frame camera.

    Args:
        intrinsics (np.ndarray): (3, 3) OpenCV intrinsics of the frames.
        size (tuple): (width, height) of the frames.
        orientation (str): ``'portrait'`` (Objectron) or ``'landscape'``.

    Returns:
        tuple: (3, 3) stored intrinsics, (width, height) stored resolution.
    """
    if orientation == 'portrait':
        return _SWAP_XY @ intrinsics @ _SWAP_XY, (size[1], size[0])
    return np.asarray(intrinsics, np.float64), tuple(size)


def _pose_matrix(rotation: np.ndarray, translation: np.ndarray) -> np.ndarray:
    pose = np.eye(4)
    pose[:3, :3], pose[:3, 3] = rotation, translation
    return pose


def write_objectron_sequence(path: str,
                             ground_truth: dict,
                             orientation: str = 'portrait',
                             category: str = 'bottle',
                             visibility: Optional[Sequence[float]] = None,
                             empty_frames: Sequence[int] = (),
                             second_object_offset: Optional[Sequence[float]] = None,
                             with_intrinsics: bool = True,
                             num_annotated: Optional[int] = None) -> str:
    """Write a rendered clip's ground truth as an Objectron ``Sequence``.

    Args:
        path (str): Output ``annotation.pbdata``.
        ground_truth (dict): From :func:`render_synthetic_bottle_video`
            (OpenCV camera frame of the rendered frames).
        orientation (str): ``'portrait'`` (Objectron's layout) or
            ``'landscape'`` (camera axes = frame axes, ARKit's y up).
        category (str): ``Object.category``.
        visibility (sequence, optional): Per-frame visibility (default 1).
        empty_frames (sequence): Frames written with no annotation.
        second_object_offset (sequence, optional): (3,) metres; adds object 1,
            the same box shifted by this much in the camera frame
            (annotation only, it is not drawn in the video).
        with_intrinsics (bool): False leaves ``ARCamera.intrinsics`` empty.
        num_annotated (int, optional): Write only the first frames.

    Returns:
        str: ``path``.
    """
    cam = ground_truth['camera']
    size = (cam.width, cam.height)
    k_frame = np.array([[cam.fx, 0, cam.cx], [0, cam.fy, cam.cy], [0, 0, 1]], np.float64)
    k_stored, resolution = stored_camera(k_frame, size, orientation)
    to_opencv = CAMERA_TO_OPENCV[orientation]
    box_size = np.asarray(ground_truth['box_size'], np.float64)
    offsets = [np.zeros(3)]
    if second_object_offset is not None:
        offsets.append(np.asarray(second_object_offset, np.float64))

    sequence = pb.Sequence()
    for object_id in range(len(offsets)):
        obj = sequence.objects.add()
        obj.id, obj.category = object_id, category
        obj.type, obj.method = pb.Object.BOUNDING_BOX, pb.Object.ANNOTATION
        obj.rotation.extend(np.eye(3).ravel().tolist())
        obj.translation.extend([0.0, 0.0, 0.0])
        obj.scale.extend(box_size.tolist())
        for i, sign in enumerate(np.asarray(BOX_CORNER_SIGNS) / 2):
            kp = obj.keypoints.add()
            kp.x, kp.y, kp.z = (float(c) for c in sign)
            kp.name = str(i)
    frames = ground_truth['frames']
    for f in frames[:num_annotated]:
        frame = sequence.frame_annotations.add()
        frame.frame_id = f['frame_index']
        frame.timestamp = f['frame_index'] / ground_truth['fps']
        # World = the first box's frame; camera = Objectron's axes of this orientation.
        world_to_camera = np.eye(4)
        world_to_camera[:3, :3] = to_opencv.T
        world_to_camera = world_to_camera @ _pose_matrix(f['rotation'], f['translation'])
        frame.camera.view_matrix.extend(world_to_camera.ravel().tolist())
        frame.camera.transform.extend(np.linalg.inv(world_to_camera).ravel().tolist())
        if with_intrinsics:
            frame.camera.intrinsics.extend(k_stored.ravel().tolist())
        frame.camera.image_resolution_width = int(resolution[0])
        frame.camera.image_resolution_height = int(resolution[1])
        if f['frame_index'] in set(empty_frames):
            continue
        for object_id, offset in enumerate(offsets):
            points_cv = f['keypoints_3d'] + offset
            ann = frame.annotations.add()
            ann.object_id = object_id
            ann.visibility = 1.0 if visibility is None else float(visibility[f['frame_index']])
            norm = (points_cv @ k_frame.T)
            norm = norm[:, :2] / norm[:, 2:] / np.array(size, np.float64)
            points_obj = points_cv @ to_opencv  # inverse of the orthogonal map
            for k in range(len(BOX_CORNER_SIGNS)):
                kp = ann.keypoints.add()
                kp.id = k
                kp.point_2d.x, kp.point_2d.y = float(norm[k, 0]), float(norm[k, 1])
                kp.point_2d.depth = float(points_cv[k, 2])
                kp.point_3d.x, kp.point_3d.y, kp.point_3d.z = (float(c) for c in points_obj[k])
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    with open(path, 'wb') as fh:
        fh.write(sequence.SerializeToString())
    return path


def write_objectron_clip(clip_dir: str,
                         num_frames: int = 12,
                         size: Tuple[int, int] = (72, 96),
                         seed: int = 0,
                         orientation: str = 'portrait',
                         video_name: str = 'video.MOV',
                         annotation_format: str = 'objectron',
                         box_scale: float = 1.0,
                         **sequence_kwargs) -> dict:
    """Render one clip into ``clip_dir`` (video + annotation file).

    Args:
        clip_dir (str): Output folder.
        num_frames (int): Video frames.
        size (tuple): (width, height) of the frames; portrait by default.
        seed (int): Motion, texture and background seed.
        orientation (str): Layout of ``annotation.pbdata`` (see
            :func:`write_objectron_sequence`).
        video_name (str): ``video.MOV`` as in Objectron (an MPEG-4 stream;
            ``.MOV`` and ``.mp4`` share the container), or ``*.mp4``.
        annotation_format (str): ``'objectron'`` (``annotation.pbdata``) or
            ``'json'`` (the project's ``annotations.json`` with ``camera``).
        box_scale (float): Multiplies the bottle's default box size.
        **sequence_kwargs: Passed to :func:`write_objectron_sequence`.

    Returns:
        dict: ``video``, ``annotation`` paths and ``ground_truth`` (the
        renderer's, in the frames' OpenCV camera frame).
    """
    os.makedirs(clip_dir, exist_ok=True)
    video = osp.join(clip_dir, video_name)
    box_size = tuple(float(s) * box_scale for s in DEFAULT_BOX_SIZE)
    with tempfile.TemporaryDirectory(dir=clip_dir) as tmp:
        rendered = osp.join(tmp, 'video.mp4')
        gt = render_synthetic_bottle_video(rendered, num_frames, size, seed, box_size=box_size)
        os.replace(rendered, video)
    if annotation_format == 'json':
        annotation = write_json_annotations(osp.join(clip_dir, 'annotations.json'), gt)
    else:
        annotation = write_objectron_sequence(
            osp.join(clip_dir, 'annotation.pbdata'), gt, orientation=orientation, **sequence_kwargs)
    return dict(video=video, annotation=annotation, ground_truth=gt)


def make_objectron_multivideo(root: str,
                              num_videos: int = 6,
                              num_frames: int = 12,
                              size: Tuple[int, int] = (72, 96),
                              seed: int = 0,
                              category: str = 'bottle',
                              box_scale: Tuple[float, float] = (0.85, 1.15)) -> List[Dict]:
    """Write ``num_videos`` portrait clips as ``root/<category>/batch-<b>/<i>/``.

    Each clip has its own motion, textures, background and box size (the
    bottle's 8 x 25 x 8 cm times a factor drawn from ``box_scale``). Two
    clips go in each batch folder, as Objectron's ``batch-*`` folders hold
    several clips.

    Returns:
        list[dict]: Per clip ``clip_dir``, ``video``, ``annotation``,
        ``ground_truth``.
    """
    rng = np.random.default_rng(seed)
    clips = []
    for i in range(num_videos):
        clip_dir = osp.join(root, category, f'batch-{i // 2}', str(i % 2))
        clip = write_objectron_clip(
            clip_dir,
            num_frames,
            size,
            seed=seed * 1000 + i,
            box_scale=float(rng.uniform(*box_scale)),
            category=category)
        clips.append(dict(clip, clip_dir=clip_dir))
    return clips

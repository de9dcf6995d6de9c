"""A synthetic "bottle" video with exact box keypoints and depths.

Over 300 lines because it renders a textured box video and writes its exact ground truth in
both annotation formats (Objectron protobuf and the project's JSON); test-data only.

A textured cuboid the size of a bottle (8 × 25 × 8 cm by default) rotates and
translates in front of a pinhole camera. Every frame's ground truth is exact:
the 9 Objectron box keypoints (centre + 8 corners, order of
:data:`~keypose_ext.datasets.bottle_metainfo.BOX_CORNER_SIGNS`) projected to
pixels, their depths (camera z in metres) and their 3D camera coordinates
(OpenCV frame: x right, y down, z forward). Each face has its own colour and
digit so the corners are distinguishable from the pixels alone.

The video is written with ``cv2.VideoWriter`` (``mp4v`` for ``.mp4``,
``MJPG`` for ``.avi``) and read back to check its frame count. The ground
truth is written in the project's JSON format and, optionally, as an
Objectron ``annotation.pbdata``, so both inputs of the converter can be
exercised. :func:`make_bottle_dataset` runs video → converter → ``bottle_data``
in one call.
"""
import json
import os
import os.path as osp
import tempfile
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np

from keypose_ext.dataset_converters.bottle_video_converter import convert_video_to_bottle_data
from keypose_ext.datasets.bottle_metainfo import BOX_CORNER_SIGNS, NUM_KEYPOINTS
from keypose_ext.utils.errors import UserRuntimeError, UserValueError
from keypose_ext.utils.io import atomic_write

DEFAULT_BOX_SIZE = (0.08, 0.25, 0.08)  # metres along local x, y, z
_CODECS = {'.mp4': 'mp4v', '.avi': 'MJPG'}
_TEXTURE_SIZE = 64


@dataclass
class PinholeCamera:
    """Pinhole intrinsics in pixels; (cx, cy) is the principal point."""
    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    @classmethod
    def for_size(cls, width: int, height: int) -> 'PinholeCamera':
        # Focal length = width gives a ~53 degree horizontal field of view.
        return cls(float(width), float(width), width / 2, height / 2, width, height)

    def project(self, points: np.ndarray) -> np.ndarray:
        """(N, 3) camera points -> (N, 2) pixels."""
        z = points[:, 2]
        return np.stack(
            [self.fx * points[:, 0] / z + self.cx, self.fy * points[:, 1] / z + self.cy], axis=1)


def box_keypoints_local(box_size: Sequence[float]) -> np.ndarray:
    """(K, 3) centre + corners of a box in its own frame, in metres."""
    return np.asarray(BOX_CORNER_SIGNS, np.float64) * np.asarray(box_size, np.float64) / 2


def _rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    cy, sy = np.cos(yaw), np.sin(yaw)
    cp, sp = np.cos(pitch), np.sin(pitch)
    cr, sr = np.cos(roll), np.sin(roll)
    rot_y = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rot_x = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    rot_z = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    return rot_x @ rot_y @ rot_z


def object_poses(num_frames: int, seed: int = 0) -> List[Tuple[np.ndarray, np.ndarray]]:
    """Object-to-camera (R (3, 3), t (3,)) per frame: one full turn about
    the box's long axis with a wobbling tilt, drifting sideways and in
    depth between ~0.7 and ~0.9 m."""
    rng = np.random.default_rng(seed)
    phase = rng.uniform(0, 2 * np.pi, size=5)
    direction = rng.choice([-1.0, 1.0])
    poses = []
    for i in range(num_frames):
        s = 2 * np.pi * i / max(num_frames, 1)
        rot = _rotation(
            yaw=phase[0] + direction * s,
            pitch=0.35 + 0.15 * np.sin(s + phase[1]),
            roll=0.12 * np.sin(2 * s + phase[2]))
        trans = np.array([
            0.06 * np.sin(s + phase[3]), 0.03 * np.sin(2 * s + phase[4]),
            0.8 + 0.1 * np.sin(s + phase[1])
        ])
        poses.append((rot, trans))
    return poses


def _faces():
    """The 6 faces as (corner keypoint indices in cyclic order, axis, sign)."""
    signs = np.asarray(BOX_CORNER_SIGNS)
    faces = []
    for axis in range(3):
        u, v = [a for a in range(3) if a != axis]
        for sign in (-1, 1):
            quad = []
            for su, sv in ((-1, -1), (-1, 1), (1, 1), (1, -1)):
                match = np.where((signs[:, axis] == sign)
                                 & (signs[:, u] == su)
                                 & (signs[:, v] == sv))[0]
                quad.append(int(match[0]))
            faces.append((quad, axis, sign))
    return faces


def _face_textures(rng: np.random.Generator) -> List[np.ndarray]:
    """A distinct colour, checker pattern and digit per face."""
    size = _TEXTURE_SIZE
    textures = []
    yy, xx = np.mgrid[0:size, 0:size]
    checker = (((yy // 8) + (xx // 8)) % 2).astype(np.float32)
    for i in range(6):
        hue = int((i * 30 + rng.integers(0, 15)) % 180)
        base = cv2.cvtColor(np.array([[[hue, 200, 220]]], np.uint8), cv2.COLOR_HSV2BGR)[0, 0]
        tex = base[None, None, :].astype(np.float32) * (0.75 + 0.25 * checker[..., None])
        tex = tex.astype(np.uint8)
        cv2.rectangle(tex, (0, 0), (size - 1, size - 1), (20, 20, 20), 2)
        cv2.putText(tex, str(i + 1), (size // 4, 3 * size // 4), cv2.FONT_HERSHEY_SIMPLEX, 1.4,
                    (255, 255, 255), 3, cv2.LINE_AA)
        textures.append(tex)
    return textures


def _background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    coarse = rng.uniform(40, 200, size=(6, 8, 3)).astype(np.float32)
    bg = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    ramp = np.linspace(-30, 30, height, dtype=np.float32)[:, None, None]
    return np.clip(bg + ramp, 0, 255).astype(np.float32)


def render_frame(background: np.ndarray, textures: List[np.ndarray], points_cam: np.ndarray,
                 rot: np.ndarray, camera: PinholeCamera) -> np.ndarray:
    """Draw the box's camera-facing faces over ``background``.

    Args:
        background (np.ndarray): (H, W, 3) float32 BGR.
        textures (list[np.ndarray]): 6 face textures (T, T, 3) uint8.
        points_cam (np.ndarray): (9, 3) box keypoints in camera coordinates.
        rot (np.ndarray): (3, 3) object-to-camera rotation.
        camera (PinholeCamera): Intrinsics.

    Returns:
        np.ndarray: (H, W, 3) uint8 BGR frame.
    """
    img = background.copy()
    pix = camera.project(points_cam).astype(np.float32)
    size = (camera.width, camera.height)
    t = _TEXTURE_SIZE - 1
    src = np.float32([[0, 0], [t, 0], [t, t], [0, t]])
    for face_id, (quad, axis, sign) in enumerate(_faces()):
        normal = rot[:, axis] * sign
        centre = points_cam[quad].mean(axis=0)
        # A convex box shows exactly the faces whose outward normal points
        # at the camera, and these never overlap: no depth sorting needed.
        if normal @ centre >= 0:
            continue
        homography = cv2.getPerspectiveTransform(src, pix[quad])
        tex = cv2.warpPerspective(
            textures[face_id].astype(np.float32), homography, size, flags=cv2.INTER_LINEAR)
        # Warping a solid mask the same way gives anti-aliased face edges.
        alpha = cv2.warpPerspective(
            np.ones((_TEXTURE_SIZE, _TEXTURE_SIZE), np.float32),
            homography,
            size,
            flags=cv2.INTER_LINEAR)[..., None]
        img = img * (1 - alpha) + tex * alpha
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


def render_synthetic_bottle_video(video_path: str,
                                  num_frames: int = 64,
                                  size: Tuple[int, int] = (160, 120),
                                  seed: int = 0,
                                  fps: float = 15.0,
                                  box_size: Sequence[float] = DEFAULT_BOX_SIZE) -> dict:
    """Write the video and return its exact ground truth.

    Args:
        video_path (str): ``.mp4`` (mp4v) or ``.avi`` (MJPG) output.
        num_frames (int): Number of frames.
        size (tuple): (width, height) in pixels.
        seed (int): Seed of the textures, background and motion.
        fps (float): Frame rate stored in the video.
        box_size (sequence): Box size in metres along local x, y, z.

    Returns:
        dict: ``camera`` (PinholeCamera), ``box_size``, ``fps`` and
        ``frames``, a list of dicts with ``frame_index``, ``keypoints``
        (9, 2) pixels, ``depth`` (9,) metres, ``keypoints_3d`` (9, 3) and the
        pose ``rotation`` (3, 3) / ``translation`` (3,).
    """
    width, height = int(size[0]), int(size[1])
    if num_frames < 1 or width < 16 or height < 16:
        raise UserValueError('Need num_frames >= 1 and a frame of at least '
                             f'16x16 pixels, got {num_frames} and {size}.')
    ext = osp.splitext(video_path)[1].lower()
    if ext not in _CODECS:
        raise UserValueError(f'{video_path}: use a .mp4 (mp4v) or .avi (MJPG) '
                             'file name.')
    rng = np.random.default_rng(seed)
    camera = PinholeCamera.for_size(width, height)
    textures = _face_textures(rng)
    background = _background(rng, width, height)
    local = box_keypoints_local(box_size)

    os.makedirs(osp.dirname(osp.abspath(video_path)), exist_ok=True)
    writer = cv2.VideoWriter(video_path, cv2.VideoWriter_fourcc(*_CODECS[ext]), fps,
                             (width, height))
    if not writer.isOpened():
        raise UserRuntimeError(f'OpenCV cannot write {_CODECS[ext]} video to {video_path}; try '
                               'the other container (.mp4 or .avi).')
    frames = []
    try:
        for i, (rot, trans) in enumerate(object_poses(num_frames, seed)):
            points_cam = local @ rot.T + trans
            writer.write(render_frame(background, textures, points_cam, rot, camera))
            frames.append(
                dict(
                    frame_index=i,
                    keypoints=camera.project(points_cam),
                    depth=points_cam[:, 2].copy(),
                    keypoints_3d=points_cam,
                    rotation=rot,
                    translation=trans))
    finally:
        writer.release()

    # Read back: a writer that silently dropped frames would break the
    # one-annotation-per-frame contract of the converter.
    cap = cv2.VideoCapture(video_path)
    count = 0
    while cap.grab():
        count += 1
    cap.release()
    if count != num_frames:
        raise RuntimeError(f'{video_path}: wrote {num_frames} frames but '
                           f'OpenCV reads back {count}.')
    return dict(camera=camera, box_size=tuple(box_size), fps=fps, frames=frames)


def write_json_annotations(path: str, ground_truth: dict) -> str:
    """Write ground truth in the project's JSON format (docs/bottle_data.md)."""
    cam = ground_truth['camera']
    frames = [
        dict(
            frame_index=f['frame_index'],
            keypoints=np.concatenate([f['keypoints'], f['depth'][:, None]], axis=1).tolist(),
            keypoints_3d=f['keypoints_3d'].tolist()) for f in ground_truth['frames']
    ]
    data = dict(
        image_size=[cam.width, cam.height],
        camera=dict(fx=cam.fx, fy=cam.fy, cx=cam.cx, cy=cam.cy),
        box_size=list(ground_truth['box_size']),
        frames=frames)
    with atomic_write(path, 'w') as f:
        json.dump(data, f)
    return path


def write_objectron_annotations(path: str, ground_truth: dict) -> str:
    """Write ground truth as an Objectron ``Sequence`` (``annotation.pbdata``).

    The world frame is the box's own frame (the box is static there and the
    camera moves, as in Objectron captures); cameras and ``point_3d`` use
    ARKit axes (y up, looking along -z).
    """
    from keypose_ext.objectron import annotation_data_pb2 as pb
    cam = ground_truth['camera']
    sequence = pb.Sequence()
    obj = sequence.objects.add()
    obj.id = 0
    obj.category = 'bottle'
    obj.type = pb.Object.BOUNDING_BOX
    obj.method = pb.Object.ANNOTATION
    obj.rotation.extend(np.eye(3).ravel().tolist())
    obj.translation.extend([0.0, 0.0, 0.0])
    obj.scale.extend(list(ground_truth['box_size']))
    for i, (x, y, z) in enumerate(np.asarray(BOX_CORNER_SIGNS) / 2):
        kp = obj.keypoints.add()
        kp.x, kp.y, kp.z = float(x), float(y), float(z)
        kp.name = str(i)
    cv_to_arkit = np.diag([1.0, -1.0, -1.0, 1.0])
    for f in ground_truth['frames']:
        frame = sequence.frame_annotations.add()
        frame.frame_id = f['frame_index']
        frame.timestamp = f['frame_index'] / ground_truth['fps']
        obj_to_cam = np.eye(4)
        obj_to_cam[:3, :3] = f['rotation']
        obj_to_cam[:3, 3] = f['translation']
        cam_to_world = np.linalg.inv(obj_to_cam) @ cv_to_arkit
        frame.camera.transform.extend(cam_to_world.ravel().tolist())
        frame.camera.view_matrix.extend(np.linalg.inv(cam_to_world).ravel().tolist())
        frame.camera.intrinsics.extend([cam.fx, 0, cam.cx, 0, cam.fy, cam.cy, 0, 0, 1])
        frame.camera.image_resolution_width = cam.width
        frame.camera.image_resolution_height = cam.height
        ann = frame.annotations.add()
        ann.object_id = 0
        ann.visibility = 1.0
        for k in range(NUM_KEYPOINTS):
            kp = ann.keypoints.add()
            kp.id = k
            kp.point_2d.x = float(f['keypoints'][k, 0] / cam.width)
            kp.point_2d.y = float(f['keypoints'][k, 1] / cam.height)
            kp.point_2d.depth = float(f['depth'][k])
            x, y, z = f['keypoints_3d'][k]
            kp.point_3d.x, kp.point_3d.y, kp.point_3d.z = x, -y, -z
    with atomic_write(path, 'wb') as fh:
        fh.write(sequence.SerializeToString())
    return path


def make_bottle_dataset(out_dir: str,
                        num_frames: int = 64,
                        size: Tuple[int, int] = (160, 120),
                        seed: int = 0,
                        annotation_format: str = 'json',
                        source_dir: Optional[str] = None,
                        overwrite: bool = False,
                        progress: bool = False) -> dict:
    """Synthetic video → converter → ``out_dir`` (``images/`` +
    ``annotations.json``) in one call.

    Args:
        out_dir (str): The ``bottle_data`` directory to create.
        num_frames (int): Frames in the video (all are converted).
        size (tuple): (width, height).
        seed (int): Generator seed.
        annotation_format (str): Input the converter reads: ``'json'`` or
            ``'objectron'``.
        source_dir (str, optional): Keep the video and raw annotations here;
            by default they go to a temporary directory.
        overwrite (bool): Replace an existing ``out_dir``.
        progress (bool): Show the converter's progress bar.

    Returns:
        dict: The converter summary (``num_images``, ``ann_file``, ...) plus
        ``ground_truth`` (see :func:`render_synthetic_bottle_video`).
    """
    if annotation_format not in ('json', 'objectron'):
        raise UserValueError('annotation_format must be "json" or "objectron", '
                             f'got {annotation_format!r}.')
    with tempfile.TemporaryDirectory() as tmp:
        src = source_dir or tmp
        os.makedirs(src, exist_ok=True)
        video = osp.join(src, 'synthetic_bottle.mp4')
        gt = render_synthetic_bottle_video(video, num_frames, size, seed)
        if annotation_format == 'json':
            ann = write_json_annotations(osp.join(src, 'synthetic_bottle.json'), gt)
        else:
            ann = write_objectron_annotations(osp.join(src, 'annotation.pbdata'), gt)
        summary = convert_video_to_bottle_data(
            video, ann, out_dir, overwrite=overwrite, progress=progress)
    summary['ground_truth'] = gt
    return summary

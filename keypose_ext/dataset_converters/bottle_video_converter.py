"""Video + per-frame box annotations -> ``bottle_data`` (JPEG frames + COCO).

Over 300 lines because it reads two annotation formats (Objectron protobuf and the project's
JSON), checks every frame's keypoints and depths against the video, and publishes the output
folder atomically; each part is small and they share one frame loop.

This is the library behind ``tools/dataset_converters/video_to_bottle_data.py``
(see ``docs/bottle_data.md`` for both file formats). Input annotations are
either an Objectron ``annotation.pbdata`` or the project's JSON::

    {"frames": [
        {"frame_index": 0,
         "keypoints": [[x, y, depth], ...],       # 9 rows: pixels, metres
         "keypoints_3d": [[X, Y, Z], ...],        # optional, 9 rows, metres,
                                                  # OpenCV camera frame
         "visibility": [2, 2, ...]},              # optional, 9 COCO flags
        ...]}

There must be exactly one annotation per video frame (``frame_index`` 0..N-1);
``stride``/``start``/``max_frames`` then pick which frames are written. The
output directory is assembled in a temporary sibling and renamed into place,
so a failed run never leaves half a dataset behind. What it writes gets the
usual permissions (files 0644, folders 0755 under the usual umask 022).
"""
import json
import os
import os.path as osp
import shutil
import tempfile
from typing import Dict, List, Optional

import cv2
import numpy as np
from tqdm import tqdm

from keypose_ext.datasets.bottle_metainfo import BOX_EDGES, KEYPOINT_NAMES, NUM_KEYPOINTS
from keypose_ext.utils.errors import UserFileNotFoundError, UserRuntimeError, UserValueError
from keypose_ext.utils.io import atomic_write, load_json

ANNOTATION_FORMATS = ('objectron', 'json')
_OBJECTRON_SUFFIXES = ('.pbdata', '.pb', '.bin')


def bottle_coco_category() -> dict:
    """The single COCO category of ``annotations.json`` (skeleton 1-based)."""
    return dict(
        id=1,
        name='bottle',
        supercategory='object',
        keypoints=list(KEYPOINT_NAMES),
        skeleton=[[a + 1, b + 1] for a, b in BOX_EDGES])


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _check_depth(depth: np.ndarray, path: str, where: str, field: str) -> None:
    """Depths are metres in front of the camera: a negative one is an
    annotation error (a sign flip, or another axis convention)."""
    if (depth < 0).any():
        k = int(np.argmax(depth < 0))
        raise UserValueError(f'{path}: {where}: {field} of keypoint {k} ({KEYPOINT_NAMES[k]}) '
                             f'is {float(depth[k]):g}; depths are metres in front of the '
                             'camera and cannot be negative. Fix the annotation file.')


def guess_annotation_format(path: str) -> str:
    """``'json'`` for ``*.json``, ``'objectron'`` for ``*.pbdata``/``.pb``."""
    suffix = osp.splitext(path)[1].lower()
    if suffix == '.json':
        return 'json'
    if suffix in _OBJECTRON_SUFFIXES:
        return 'objectron'
    raise UserValueError(f'Cannot tell the annotation format of {path!r} from its suffix '
                         f'{suffix!r}; pass --format objectron or --format json.')


def _as_points(value, shape, path, where, field) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise UserValueError(f'{path}: {where}: "{field}" must be numbers, '
                             f'got {str(value)[:80]}') from None
    if arr.shape != shape:
        raise UserValueError(f'{path}: {where}: "{field}" has shape {list(arr.shape)}, '
                             f'expected {list(shape)} ({NUM_KEYPOINTS} keypoints: box centre '
                             '+ 8 corners).')
    if not np.isfinite(arr).all():
        raise UserValueError(f'{path}: {where}: "{field}" contains NaN or '
                             'infinite values.')
    return arr


def load_json_annotations(path: str) -> List[dict]:
    """Read the project's JSON annotation format.

    Returns:
        list[dict]: Per frame ``frame_index`` (int), ``keypoints`` (9, 2)
        pixels, ``depth`` (9,) metres, ``keypoints_3d`` (9, 3) or None and
        ``visibility`` (9,) int or None.
    """
    data = load_json(path, 'Annotation file', 'see docs/bottle_data.md for the format')
    if not isinstance(data, dict) or not isinstance(data.get('frames'), list):
        raise UserValueError(f'{path}: expected an object with a "frames" '
                             'list (see docs/bottle_data.md).')
    frames = []
    for i, frame in enumerate(data['frames']):
        where = f'frames[{i}]'
        if not isinstance(frame, dict) or 'keypoints' not in frame:
            raise UserValueError(f'{path}: {where} must be an object with "keypoints" '
                                 f'([x, y, depth] × {NUM_KEYPOINTS}).')
        index = frame.get('frame_index', i)
        if not isinstance(index, int) or index < 0:
            raise UserValueError(f'{path}: {where}: "frame_index" must be a '
                                 f'non-negative integer, got {index!r}.')
        kpts = _as_points(frame['keypoints'], (NUM_KEYPOINTS, 3), path, where, 'keypoints')
        _check_depth(kpts[:, 2], path, where, '"keypoints" depth (third number)')
        points_3d = None
        if frame.get('keypoints_3d') is not None:
            points_3d = _as_points(frame['keypoints_3d'], (NUM_KEYPOINTS, 3), path, where,
                                   'keypoints_3d')
        visibility = None
        if frame.get('visibility') is not None:
            visibility = _as_points(frame['visibility'], (NUM_KEYPOINTS, ), path, where,
                                    'visibility').astype(int)
            if not np.isin(visibility, (0, 1, 2)).all():
                raise UserValueError(f'{path}: {where}: "visibility" values '
                                     'must be 0, 1 or 2 (COCO flags).')
        frames.append(
            dict(
                frame_index=index,
                keypoints=kpts[:, :2],
                depth=kpts[:, 2],
                keypoints_3d=points_3d,
                visibility=visibility))
    return frames


def load_objectron_annotations(path: str, object_id: Optional[int] = None) -> List[dict]:
    """Read an Objectron ``annotation.pbdata`` (same dicts as the JSON
    loader, with ``keypoints_norm`` (9, 2) instead of pixels: the pixel size
    is the decoded frame's)."""
    from keypose_ext.objectron import read_objectron_annotations
    frames = []
    for f in read_objectron_annotations(path, object_id=object_id):
        depth = f.depth.astype(np.float64)
        _check_depth(depth, path, f'frame_id {f.frame_id}', 'point_2d.depth')
        frames.append(
            dict(
                frame_index=f.frame_id,
                keypoints_norm=f.keypoints_norm.astype(np.float64),
                depth=depth,
                keypoints_3d=None if f.keypoints_3d is None else f.keypoints_3d.astype(np.float64),
                visibility=None))
    return frames


def _index_frames(frames: List[dict], path: str) -> Dict[int, dict]:
    by_index: Dict[int, dict] = {}
    for frame in frames:
        idx = frame['frame_index']
        if idx in by_index:
            raise UserValueError(f'{path}: frame_index {idx} is annotated twice.')
        by_index[idx] = frame
    last = max(by_index, default=-1)
    missing = sorted(set(range(last + 1)) - set(by_index))
    if missing:
        raise UserValueError(f'{path}: {len(frames)} frames are annotated but frame_index '
                             f'{missing[:5]} is missing; annotate every video frame '
                             f'0..{last} exactly once.')
    return by_index


def _coco_annotation(frame: dict, ann_id: int, width: int, height: int) -> dict:
    """COCO keypoint annotation of one frame (pixels + depths)."""
    xy = frame['keypoints']
    depth = frame['depth']
    if frame.get('visibility') is not None:
        vis = np.asarray(frame['visibility'], dtype=int)
    else:
        inside = ((xy[:, 0] >= 0) & (xy[:, 0] < width) & (xy[:, 1] >= 0)
                  & (xy[:, 1] < height) & (depth > 0))
        # COCO: 2 = labelled and visible, 1 = labelled but outside/hidden.
        vis = np.where(inside, 2, 1)
    flat = []
    for (x, y), v in zip(xy.tolist(), vis.tolist()):
        flat += [round(x, 4), round(y, 4), int(v)]
    x0, x1 = np.clip([xy[:, 0].min(), xy[:, 0].max()], 0, width)
    y0, y1 = np.clip([xy[:, 1].min(), xy[:, 1].max()], 0, height)
    bbox = [
        round(float(x0), 3),
        round(float(y0), 3),
        round(float(x1 - x0), 3),
        round(float(y1 - y0), 3)
    ]
    ann = dict(
        id=ann_id,
        image_id=ann_id,
        category_id=1,
        keypoints=flat,
        num_keypoints=int((vis > 0).sum()),
        keypoints_depth=[round(float(d), 6) for d in depth],
        bbox=bbox,
        area=round(bbox[2] * bbox[3], 3),
        iscrowd=0)
    if frame.get('keypoints_3d') is not None:
        ann['keypoints_3d'] = [[round(float(c), 6) for c in p] for p in frame['keypoints_3d']]
    return ann


def _publish_dir(tmp_dir: str, out_dir: str) -> None:
    """Rename the finished ``tmp_dir`` to ``out_dir``, replacing it.

    The old ``out_dir`` is first renamed aside, so ``out_dir`` is always the
    complete old or the complete new dataset; the old one is then deleted.
    """
    if osp.isdir(out_dir):
        old = tempfile.mkdtemp(prefix=f'.{osp.basename(out_dir)}.old-', dir=osp.dirname(out_dir))
        os.rmdir(old)
        os.rename(out_dir, old)
        os.rename(tmp_dir, out_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp_dir, out_dir)


def _check_out_dir(out_dir: str, overwrite: bool) -> None:
    """Refuse an ``out_dir`` that is a file, or a non-empty folder without
    ``overwrite``, before any work is done."""
    if osp.lexists(out_dir) and not osp.isdir(out_dir):
        raise UserValueError(f'--out-dir {out_dir!r} is an existing file, not a directory; '
                             'pass another --out-dir (the converter never replaces a file).')
    if osp.isdir(out_dir) and os.listdir(out_dir) and not overwrite:
        raise UserValueError(f'Output directory {out_dir!r} is not empty; '
                             'pass --overwrite to replace it.')
    parent = osp.dirname(out_dir)
    if osp.lexists(parent) and not osp.isdir(parent):
        raise UserValueError(f'--out-dir {out_dir!r}: its parent {parent!r} is a file; pass '
                             'another --out-dir.')


def _make_tmp_dir(out_dir: str) -> str:
    """A hidden sibling of ``out_dir`` with the permissions ``mkdir`` would
    give (``mkdtemp`` makes it 0700, which the rename would publish)."""
    parent = osp.dirname(out_dir)
    try:
        os.makedirs(parent, exist_ok=True)
        tmp_dir = tempfile.mkdtemp(prefix=f'.{osp.basename(out_dir)}.tmp-', dir=parent)
    except OSError as e:
        raise UserRuntimeError(f'Cannot create the output next to {out_dir!r}: {e.strerror} '
                               f'({parent}); pass an --out-dir in a writable folder.') from None
    os.chmod(tmp_dir, 0o777 & ~_umask())
    return tmp_dir


def convert_video_to_bottle_data(video: str,
                                 annotations: str,
                                 out_dir: str,
                                 annotation_format: Optional[str] = None,
                                 stride: int = 1,
                                 start: int = 0,
                                 max_frames: Optional[int] = None,
                                 object_id: Optional[int] = None,
                                 jpeg_quality: int = 95,
                                 overwrite: bool = False,
                                 progress: bool = True) -> dict:
    """Decode ``video`` with OpenCV and write ``out_dir/images/*.jpg`` and
    ``out_dir/annotations.json``.

    Args:
        video (str): Any video OpenCV can decode (.mp4, .mov, .avi, ...).
        annotations (str): Objectron ``.pbdata`` or project ``.json`` file
            with one annotation per video frame.
        out_dir (str): Output directory (``bottle_data``); an existing file
            there is refused.
        annotation_format (str, optional): ``'objectron'`` or ``'json'``;
            guessed from the suffix when None.
        stride (int): Keep every ``stride``-th frame.
        start (int): First video frame to keep.
        max_frames (int, optional): Keep at most this many frames.
        object_id (int, optional): Objectron object to read.
        jpeg_quality (int): JPEG quality of the written frames.
        overwrite (bool): Replace an existing non-empty ``out_dir``.
        progress (bool): Show a tqdm progress bar.

    Returns:
        dict: ``num_images``, ``video_frame_count``, ``out_dir``,
        ``ann_file``.

    Raises:
        KeyposeUserError: (``UserValueError``, ``UserFileNotFoundError``,
            ``UserRuntimeError``) for every input problem, naming the file.
    """
    if not osp.isfile(video):
        raise UserFileNotFoundError(f'Video not found: {video!r}')
    if not osp.isfile(annotations):
        raise UserFileNotFoundError(f'Annotation file not found: {annotations!r}')
    fmt = annotation_format or guess_annotation_format(annotations)
    if fmt not in ANNOTATION_FORMATS:
        raise UserValueError(f'Unknown annotation format {fmt!r}; use one of '
                             f'{ANNOTATION_FORMATS}.')
    if stride < 1 or start < 0 or (max_frames is not None and max_frames < 1):
        raise UserValueError('Need stride >= 1, start >= 0 and max_frames >= 1; got '
                             f'stride={stride}, start={start}, max_frames={max_frames}.')
    if not 1 <= int(jpeg_quality) <= 100:
        raise UserValueError(f'--jpeg-quality must be 1..100, got {jpeg_quality}.')
    out_dir = osp.abspath(out_dir)
    _check_out_dir(out_dir, overwrite)

    if fmt == 'json':
        frames = load_json_annotations(annotations)
    else:
        frames = load_objectron_annotations(annotations, object_id)
    by_index = _index_frames(frames, annotations)
    num_ann = len(by_index)

    cap = cv2.VideoCapture(video)
    if not cap.isOpened():
        raise UserValueError(f'OpenCV cannot open the video {video!r} (unknown container or '
                             'codec, or not a video); convert it, e.g. with ffmpeg, to .mp4.')
    tmp_dir = _make_tmp_dir(out_dir)
    try:
        os.makedirs(osp.join(tmp_dir, 'images'))
        images, anns = [], []
        reported = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        bar = tqdm(
            total=reported if reported > 0 else None,
            unit='frame',
            desc=f'Decoding {osp.basename(video)}',
            disable=not progress)
        idx = 0
        # grab() every frame so the count check sees the whole video, but
        # retrieve() (the pixel copy) only the frames that are kept.
        while cap.grab():
            if idx >= num_ann:
                raise UserValueError(f'{annotations} annotates {num_ann} frames but the video '
                                     f'{video} has more (at least {idx + 1}); annotations '
                                     'must cover every video frame.')
            keep = (
                idx >= start and (idx - start) % stride == 0
                and (max_frames is None or len(images) < max_frames))
            if keep:
                ok, img = cap.retrieve()
                if not ok or img is None:
                    raise UserValueError(f'{video}: frame {idx} cannot be decoded (damaged '
                                         'video); re-encode it, e.g. with ffmpeg.')
                height, width = img.shape[:2]
                frame = dict(by_index[idx])
                if 'keypoints_norm' in frame:
                    frame['keypoints'] = frame['keypoints_norm'] * np.array([width, height],
                                                                            np.float64)
                file_name = f'{idx:06d}.jpg'
                written = cv2.imwrite(
                    osp.join(tmp_dir, 'images', file_name), img,
                    [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])
                if not written:
                    raise UserRuntimeError(f'Cannot write {file_name} under {tmp_dir} (disk '
                                           'full or not writable); free space or pass another '
                                           '--out-dir.')
                image_id = len(images) + 1
                images.append(
                    dict(
                        id=image_id,
                        file_name=file_name,
                        width=width,
                        height=height,
                        frame_index=idx))
                anns.append(_coco_annotation(frame, image_id, width, height))
            idx += 1
            bar.update(1)
        bar.close()
        if idx == 0:
            raise UserValueError(f'OpenCV decoded no frame from {video!r} (empty or damaged '
                                 'video).')
        if idx != num_ann:
            raise UserValueError(f'{annotations} annotates {num_ann} frames but the video '
                                 f'{video} has {idx} frames; they must match one to one.')
        if not images:
            raise UserValueError(f'No frame selected: start={start} is past the last frame '
                                 f'({idx - 1}) of {video}.')
        coco = dict(
            info=dict(
                description='bottle keypoints: 0 = box centre, 1..8 = 3D box '
                'corners (Objectron order); keypoints_depth in metres',
                source_video=osp.basename(video),
                annotation_file=osp.basename(annotations),
                annotation_format=fmt,
                video_frame_count=idx,
                start=start,
                stride=stride,
                version=1),
            images=images,
            annotations=anns,
            categories=[bottle_coco_category()])
        with atomic_write(osp.join(tmp_dir, 'annotations.json'), 'w') as f:
            json.dump(coco, f)
        _publish_dir(tmp_dir, out_dir)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    finally:
        cap.release()
    return dict(
        num_images=len(images),
        video_frame_count=idx,
        out_dir=out_dir,
        ann_file=osp.join(out_dir, 'annotations.json'))

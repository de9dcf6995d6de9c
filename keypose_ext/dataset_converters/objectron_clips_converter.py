"""Many Objectron-format clips -> one multi-video dataset, split by video.

Over 300 lines because it finds clips in three layouts, converts each (both annotation
formats, resumable by a signature per clip) and writes the by-video splits; the three share
the clip record and the resume bookkeeping.

The library behind ``tools/dataset_converters/objectron_to_multivideo.py``
(``docs/objectron.md``). A clip is a video plus its box annotations, either an
Objectron ``annotation.pbdata`` (read by :mod:`keypose_ext.objectron.reader`)
or the project's JSON (read by the single-video converter's
:func:`~keypose_ext.dataset_converters.bottle_video_converter.load_json_annotations`,
intrinsics from its top-level ``camera``). Clips are found in a folder (every
sub-folder holding a video and an annotation file, or Objectron's download
layout ``videos/<id>/video.MOV`` + ``annotations/<id>.pbdata``), or listed.

Output (``out_dir``)::

    images/<video_id>/<video_id>_<frame>.jpg   frames that annotate an object
    clips/<video_id>.json                      one record per converted clip
    annotations_{train,val,test}.json          COCO-style, one per split
    splits.json                                video ids per split

Each clip is converted once: its record is written last, atomically, with a
signature of the source files and options, so an interrupted run resumes and
a rerun skips every clip already converted. Splits are by video: all frames
of a clip go to one split.
"""
import hashlib
import itertools
import json
import os
import os.path as osp
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Union

import cv2
import numpy as np
from tqdm import tqdm

from keypose_ext.dataset_converters.bottle_video_converter import (bottle_coco_category,
                                                                   guess_annotation_format,
                                                                   load_json_annotations)
from keypose_ext.objectron.reader import ORIENTATIONS, read_objectron_clip
from keypose_ext.utils.errors import UserFileNotFoundError, UserValueError
from keypose_ext.utils.io import atomic_write, load_json

VIDEO_SUFFIXES = ('.mov', '.mp4', '.avi', '.mkv')
ANNOTATION_NAMES = ('annotation.pbdata', 'annotations.json')
SPLITS = ('train', 'val', 'test')
OBJECT_CHOICES = ('first', 'all')
_RECORD_VERSION = 1


@dataclass
class ClipSource:
    """One clip to convert: ``video`` + ``annotation`` files, ``video_id``."""
    video_id: str
    video: str
    annotation: str


def _safe_id(text: str) -> str:
    return ''.join(c if c.isalnum() or c in '-.' else '_' for c in text.strip('/'))


def _clip_in_dir(folder: str) -> Optional[tuple]:
    """(video, annotation) of a folder holding exactly one clip, else None."""
    names = sorted(os.listdir(folder))
    videos = [n for n in names if osp.splitext(n)[1].lower() in VIDEO_SUFFIXES]
    anns = [n
            for n in names if n in ANNOTATION_NAMES] or [n for n in names if n.endswith('.pbdata')]
    if not videos or not anns:
        return None
    if len(videos) > 1 or len(anns) > 1:
        raise UserValueError(
            f'{folder} holds several videos {videos} or annotation files {anns}; keep one '
            'clip per folder (video.MOV + annotation.pbdata), or list the clips explicitly.')
    return osp.join(folder, videos[0]), osp.join(folder, anns[0])


def discover_clips(source: Union[str, Sequence]) -> List[ClipSource]:
    """Find the clips to convert.

    Args:
        source: A folder (searched recursively for clip folders, or laid out
            as Objectron's ``videos/`` + ``annotations/``), a text file with
            one clip folder per line, or a list of clip folders or of dicts
            ``dict(video=..., annotation=..., video_id=...)``.

    Returns:
        list[ClipSource]: Sorted by ``video_id``; ids are unique.
    """
    clips: List[ClipSource] = []
    if isinstance(source, str) and osp.isfile(source):
        with open(source, encoding='utf-8') as f:
            base = osp.dirname(osp.abspath(source))
            lines = [ln.strip() for ln in f if ln.strip() and not ln.startswith('#')]
        source = [ln if osp.isabs(ln) else osp.join(base, ln) for ln in lines]
    if isinstance(source, str):
        if not osp.isdir(source):
            raise UserFileNotFoundError(
                f'Clip source not found: {source!r}; pass a folder of clips, a text file '
                'listing clip folders, or a list.')
        videos_dir, anns_dir = osp.join(source, 'videos'), osp.join(source, 'annotations')
        if osp.isdir(videos_dir) and osp.isdir(anns_dir):
            for folder, _, files in sorted(os.walk(videos_dir)):
                rel = osp.relpath(folder, videos_dir)
                ann = osp.join(anns_dir, rel + '.pbdata')
                videos = [n for n in files if osp.splitext(n)[1].lower() in VIDEO_SUFFIXES]
                if videos and osp.isfile(ann):
                    clips.append(ClipSource(_safe_id(rel), osp.join(folder, videos[0]), ann))
        else:
            for folder, dirs, _ in sorted(os.walk(source)):
                dirs[:] = sorted(d for d in dirs if not d.startswith('.'))
                found = _clip_in_dir(folder)
                if found:
                    rel = osp.relpath(folder, source)
                    clips.append(
                        ClipSource(
                            _safe_id(rel if rel != '.' else osp.basename(osp.abspath(folder))),
                            *found))
        if not clips:
            raise UserValueError(
                f'No clip found under {source!r}: expected folders with a video '
                f'({"/".join(VIDEO_SUFFIXES)}) and {" or ".join(ANNOTATION_NAMES)}.')
    else:
        for i, item in enumerate(source):
            if isinstance(item, dict):
                for key in ('video', 'annotation'):
                    if key not in item:
                        raise UserValueError(f'clip list entry {i} has no {key!r}.')
                vid = item.get('video_id') or _safe_id(osp.splitext(item['video'])[0])
                clips.append(ClipSource(_safe_id(vid), item['video'], item['annotation']))
            else:
                if not osp.isdir(item):
                    raise UserFileNotFoundError(f'Clip folder not found: {item!r}')
                found = _clip_in_dir(item)
                if not found:
                    raise UserValueError(f'{item}: no video with an annotation file in it.')
                parts = osp.normpath(osp.abspath(item)).split(os.sep)[-3:]
                clips.append(ClipSource(_safe_id('_'.join(parts)), *found))
    ids = [c.video_id for c in clips]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise UserValueError(f'Two clips get the same video id {dup[:3]}; give them '
                             'distinct folders or explicit video_id values.')
    for clip in clips:
        for path in (clip.video, clip.annotation):
            if not osp.isfile(path):
                raise UserFileNotFoundError(f'clip {clip.video_id}: file not found: {path!r}')
    return sorted(clips, key=lambda c: c.video_id)


def _signature(clip: ClipSource, options: dict) -> str:
    digest = hashlib.sha1(json.dumps(options, sort_keys=True).encode())
    for path in (clip.video, clip.annotation):
        stat = os.stat(path)
        digest.update(f'{osp.abspath(path)}|{stat.st_size}|{stat.st_mtime_ns}\n'.encode())
    return f'v{_RECORD_VERSION}-{digest.hexdigest()[:16]}'


def _read_video_frames(video: str):
    """Yield decoded BGR frames (H, W, 3) of ``video`` in order."""
    cap = cv2.VideoCapture(video)
    if not cap.isOpened():
        raise UserValueError(f'OpenCV cannot open the video {video!r} (unknown container '
                             'or codec).')
    try:
        while True:
            ok, img = cap.read()
            if not ok or img is None:
                return
            yield img
    finally:
        cap.release()


def _json_clip_frames(path: str, video_id: str) -> List[dict]:
    """Project JSON -> per-frame instance dicts with the clip's intrinsics."""
    data = load_json(path, 'clip annotation file')
    camera = data.get('camera') if isinstance(data, dict) else None
    if not isinstance(camera, dict) or not all(k in camera for k in ('fx', 'fy', 'cx', 'cy')):
        raise UserValueError(
            f'clip {video_id}: {path} has no camera intrinsics; add a top-level "camera": '
            '{"fx": ..., "fy": ..., "cx": ..., "cy": ...} in pixels of the video frames.')
    k = np.array([[camera['fx'], 0, camera['cx']], [0, camera['fy'], camera['cy']], [0, 0, 1]],
                 np.float64)
    frames = []
    for f in load_json_annotations(path):
        frames.append(
            dict(
                frame_index=f['frame_index'],
                intrinsics=k,
                instances=[
                    dict(
                        object_id=0,
                        keypoints=f['keypoints'],
                        depth=f['depth'],
                        keypoints_3d=f['keypoints_3d'],
                        visibility=1.0,
                        flags=f['visibility'])
                ]))
    return frames


def _objectron_clip_frames(clip: ClipSource, size, orientation: str) -> tuple:
    """Objectron file -> (per-frame dicts, categories, orientation)."""
    seq = read_objectron_clip(clip.annotation, image_size=size, orientation=orientation)
    frames = []
    for f in seq.frames:
        if f.intrinsics is None:
            raise UserValueError(
                f'clip {clip.video_id}: {clip.annotation} frame_id {f.frame_id} has no camera '
                'intrinsics (ARCamera.intrinsics, 9 numbers); the 3D box cannot be lifted '
                'without them. Leave the clip out or add the camera.')
        frames.append(
            dict(
                frame_index=f.frame_id,
                intrinsics=f.intrinsics,
                instances=[
                    dict(
                        object_id=i.object_id,
                        keypoints=i.keypoints,
                        depth=i.depth,
                        keypoints_3d=i.keypoints_3d,
                        visibility=i.visibility,
                        flags=None) for i in f.instances
                ]))
    return frames, seq.categories, seq.orientation


def _coco_fields(inst: dict, width: int, height: int) -> dict:
    """COCO keypoint fields of one instance (pixels, depth, 3D, flags, bbox)."""
    xy = np.asarray(inst['keypoints'], np.float64)
    depth = np.asarray(inst['depth'], np.float64)
    if inst['keypoints_3d'] is not None:
        # Camera z of the 3D points: the depth the lifting assumes.
        depth = np.asarray(inst['keypoints_3d'], np.float64)[:, 2]
    if inst.get('flags') is not None:
        flags = np.asarray(inst['flags'], int)
    else:
        inside = ((xy[:, 0] >= 0) & (xy[:, 0] < width) & (xy[:, 1] >= 0) & (xy[:, 1] < height)
                  & (depth > 0))
        flags = np.where(inside, 2, 1)  # COCO: 2 visible, 1 labelled but outside
    x0, x1 = np.clip([xy[:, 0].min(), xy[:, 0].max()], 0, width)
    y0, y1 = np.clip([xy[:, 1].min(), xy[:, 1].max()], 0, height)
    bbox = [round(float(v), 3) for v in (x0, y0, x1 - x0, y1 - y0)]
    fields = dict(
        keypoints=[round(float(v), 4) for row in np.c_[xy, flags] for v in row],
        num_keypoints=int((flags > 0).sum()),
        keypoints_depth=[round(float(d), 6) for d in depth],
        bbox=bbox,
        area=round(bbox[2] * bbox[3], 3),
        iscrowd=0,
        objectron_visibility=round(float(inst['visibility']), 6),
        object_id=int(inst['object_id']))
    if inst['keypoints_3d'] is not None:
        fields['keypoints_3d'] = [[round(float(c), 6) for c in p] for p in inst['keypoints_3d']]
    return fields


def convert_clip(clip: ClipSource,
                 out_dir: str,
                 objects: Union[str, int] = 'first',
                 stride: int = 1,
                 max_frames: Optional[int] = None,
                 orientation: str = 'auto',
                 jpeg_quality: int = 95) -> dict:
    """Decode one clip into ``out_dir/images/<video_id>/`` and its record.

    Args:
        clip (ClipSource): The clip.
        out_dir (str): Dataset folder.
        objects (str | int): ``'first'`` (the sequence's first object; a
            warning names the others), ``'all'`` (every object is its own
            instance) or an ``Object.id``.
        stride (int): Keep every ``stride``-th annotated frame.
        max_frames (int, optional): Keep at most this many frames.
        orientation (str): Objectron orientation (``'auto'`` detects it).
        jpeg_quality (int): JPEG quality of the frames.

    Returns:
        dict: The clip record (also written to ``clips/<video_id>.json``).
    """
    fmt = guess_annotation_format(clip.annotation)
    frames_iter = _read_video_frames(clip.video)
    first = next(frames_iter, None)
    if first is None:
        raise UserValueError(f'clip {clip.video_id}: OpenCV decoded no frame from '
                             f'{clip.video!r}.')
    height, width = first.shape[:2]
    categories, used_orientation = {}, None
    if fmt == 'json':
        frames = _json_clip_frames(clip.annotation, clip.video_id)
    else:
        frames, categories, used_orientation = _objectron_clip_frames(clip, (width, height),
                                                                      orientation)
    by_index = {}
    for f in frames:
        if f['frame_index'] in by_index:
            raise UserValueError(f'clip {clip.video_id}: {clip.annotation} annotates '
                                 f'frame {f["frame_index"]} twice.')
        by_index[f['frame_index']] = f

    object_ids = sorted({i['object_id'] for f in frames for i in f['instances']})
    if objects == 'all':
        keep_ids = object_ids
    elif objects == 'first':
        keep_ids = object_ids[:1]
        if len(object_ids) > 1:
            warnings.warn(f'clip {clip.video_id} annotates objects {object_ids}; keeping '
                          f'object {object_ids[0]} (objects="all" keeps every one).')
    elif isinstance(objects, int) and not isinstance(objects, bool):
        if objects not in object_ids:
            raise UserValueError(f'clip {clip.video_id}: object id {objects} is not '
                                 f'annotated; its objects are {object_ids}.')
        keep_ids = [objects]
    else:
        raise UserValueError(f'objects must be "first", "all" or an object id, got {objects!r}.')

    image_dir = osp.join(out_dir, 'images', clip.video_id)
    os.makedirs(osp.join(out_dir, 'images'), exist_ok=True)
    tmp_dir = tempfile.mkdtemp(prefix=f'.{clip.video_id}.tmp-', dir=osp.join(out_dir, 'images'))
    images, anns = [], []
    num_video_frames, kept_annotated = 0, 0
    try:
        for index, img in enumerate(itertools.chain([first], frames_iter)):
            num_video_frames += 1
            if img.shape[:2] != (height, width):
                raise UserValueError(f'clip {clip.video_id}: frame {index} of {clip.video} '
                                     f'is {img.shape[1]}x{img.shape[0]}, frame 0 is '
                                     f'{width}x{height}.')
            frame = by_index.get(index)
            instances = [] if frame is None else [
                i for i in frame['instances'] if i['object_id'] in keep_ids
            ]
            if not instances:
                continue
            kept_annotated += 1
            full = max_frames is not None and len(images) >= max_frames
            if (kept_annotated - 1) % stride or full:
                continue
            file_name = f'{clip.video_id}_{index:06d}.jpg'
            params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)]
            if not cv2.imwrite(osp.join(tmp_dir, file_name), img, params):
                raise OSError(f'Cannot write {file_name} under {tmp_dir}.')
            images.append(
                dict(
                    file_name=f'images/{clip.video_id}/{file_name}',
                    width=width,
                    height=height,
                    frame_index=index,
                    camera_intrinsics=np.round(frame['intrinsics'], 6).tolist()))
            for inst in instances:
                anns.append(dict(_coco_fields(inst, width, height), frame_index=index))
        if len(frames) != num_video_frames or max(by_index, default=-1) >= num_video_frames:
            raise UserValueError(f'clip {clip.video_id}: {osp.basename(clip.annotation)} annotates '
                                 f'{len(frames)} frames (ids {min(by_index, default=0)}..'
                                 f'{max(by_index, default=-1)}) but {osp.basename(clip.video)} has '
                                 f'{num_video_frames} frames; they must match one to one '
                                 f'({clip.annotation}).')
        if not images:
            raise UserValueError(f'clip {clip.video_id}: no frame annotates object(s) '
                                 f'{keep_ids}; leave the clip out.')
        if osp.isdir(image_dir):
            shutil.rmtree(image_dir)
        os.rename(tmp_dir, image_dir)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    category = categories.get(keep_ids[0], '') if categories else ''
    return dict(
        video_id=clip.video_id,
        video=osp.abspath(clip.video),
        annotation=osp.abspath(clip.annotation),
        annotation_format=fmt,
        orientation=used_orientation,
        category=category,
        object_ids=keep_ids,
        video_frame_count=num_video_frames,
        frames_without_object=num_video_frames - kept_annotated,
        images=images,
        annotations=anns)


def split_videos(video_ids: Sequence[str],
                 split: Union[Sequence[float], Dict[str, Sequence[str]], str] = (0.8, 0.1, 0.1),
                 seed: int = 0) -> Dict[str, List[str]]:
    """Assign whole videos to train/val/test.

    Args:
        video_ids: Every converted video id.
        split: Fractions ``(train, val, test)`` (shuffled with ``seed``; each
            non-zero fraction gets at least one video when there are enough),
            or explicit ``{'train': [...], 'val': [...], 'test': [...]}``, or
            a JSON file holding that dict (e.g. from Objectron's index files).
        seed (int): Shuffle seed for fractions.

    Returns:
        dict: ``train``/``val``/``test`` -> sorted video ids; disjoint.
    """
    ids = sorted(video_ids)
    if isinstance(split, str):
        split = load_json(split, 'split file', 'write {"train": [...], "val": [...], '
                          '"test": [...]} with video ids')
    if isinstance(split, dict):
        unknown = sorted(set(split) - set(SPLITS))
        if unknown:
            raise UserValueError(f'split keys must be {SPLITS}, got {unknown}.')
        out = {name: sorted(_safe_id(v) for v in split.get(name, [])) for name in SPLITS}
        seen = [v for name in SPLITS for v in out[name]]
        twice = sorted({v for v in seen if seen.count(v) > 1})
        if twice:
            raise UserValueError(f'video ids {twice[:3]} are in two splits; splits are by video.')
        missing = sorted(set(seen) - set(ids))
        if missing:
            raise UserValueError(f'split lists videos that were not converted: {missing[:3]}.')
        return out
    fractions = np.asarray(split, np.float64)
    if fractions.shape != (3, ) or (fractions < 0).any() or fractions.sum() <= 0:
        raise UserValueError(f'split must be 3 fractions (train, val, test), got {split!r}.')
    fractions = fractions / fractions.sum()
    order = list(np.random.default_rng(seed).permutation(len(ids)))
    counts = np.floor(fractions * len(ids)).astype(int)
    for i in np.argsort(-(fractions * len(ids) - counts)):  # largest remainders first
        if counts.sum() < len(ids):
            counts[i] += 1
    for i in (1, 2):  # a requested val/test split gets one video if it can
        if fractions[i] > 0 and counts[i] == 0 and counts[0] > 1:
            counts[i], counts[0] = 1, counts[0] - 1
    bounds = np.cumsum(counts)
    return {
        name: sorted(ids[j] for j in order[start:end])
        for name, start, end in zip(SPLITS, [0, *bounds[:2]], bounds)
    }


def write_split_files(out_dir: str, records: List[dict], splits: Dict[str,
                                                                      List[str]]) -> Dict[str, str]:
    """Write ``annotations_<split>.json`` (COCO) and ``splits.json``.

    Images get ``video_id``, ``frame_index`` and ``camera_intrinsics`` (3x3,
    pixels); annotations ``keypoints_depth``, ``keypoints_3d`` (OpenCV camera
    frame), ``objectron_visibility`` and ``object_id``. Ids are unique across
    splits.
    """
    by_id = {r['video_id']: r for r in records}
    categories = sorted({r['category'] for r in records if r['category']})
    category = dict(
        bottle_coco_category(), name=categories[0] if len(categories) == 1 else 'object')
    paths, image_id, ann_id = {}, 0, 0
    for name in SPLITS:
        images, anns = [], []
        for video_id in splits[name]:
            record = by_id[video_id]
            first_image = {}
            for img in record['images']:
                image_id += 1
                first_image[img['frame_index']] = image_id
                images.append(dict(img, id=image_id, video_id=video_id))
            for ann in record['annotations']:
                ann_id += 1
                anns.append(
                    dict(
                        ann,
                        id=ann_id,
                        image_id=first_image[ann['frame_index']],
                        category_id=1,
                        video_id=video_id))
        coco = dict(
            info=dict(
                description='Objectron-format clips, split by video; keypoints: '
                '0 = box centre, 1..8 = corners (Objectron order)',
                split=name,
                videos=splits[name],
                version=_RECORD_VERSION),
            images=images,
            annotations=anns,
            categories=[category])
        paths[name] = osp.join(out_dir, f'annotations_{name}.json')
        with atomic_write(paths[name], 'w') as f:
            json.dump(coco, f)
    with atomic_write(osp.join(out_dir, 'splits.json'), 'w') as f:
        json.dump(splits, f, indent=1)
    return paths


def convert_objectron_clips(source: Union[str, Sequence],
                            out_dir: str,
                            split: Union[Sequence[float], Dict, str] = (0.8, 0.1, 0.1),
                            seed: int = 0,
                            objects: Union[str, int] = 'first',
                            stride: int = 1,
                            max_frames: Optional[int] = None,
                            orientation: str = 'auto',
                            jpeg_quality: int = 95,
                            progress: bool = True) -> dict:
    """Convert every clip of ``source`` (skipping those already converted) and
    write the split files.

    Args:
        source: See :func:`discover_clips`.
        out_dir (str): Dataset folder (created; reused across runs).
        split: See :func:`split_videos`.
        seed (int): Split seed.
        objects, stride, max_frames, orientation, jpeg_quality: See
            :func:`convert_clip`; changing one re-converts the clips.
        progress (bool): Show a tqdm bar over the clips.

    Returns:
        dict: ``converted`` and ``skipped`` video ids, ``splits``,
        ``ann_files`` (split -> path), ``num_images`` per split.
    """
    if orientation not in ORIENTATIONS:
        raise UserValueError(f'orientation must be one of {ORIENTATIONS}, got {orientation!r}.')
    if stride < 1 or (max_frames is not None and max_frames < 1):
        raise UserValueError(f'Need stride >= 1 and max_frames >= 1, got stride={stride}, '
                             f'max_frames={max_frames}.')
    if objects not in OBJECT_CHOICES and not isinstance(objects, int):
        raise UserValueError(f'objects must be "first", "all" or an object id, got {objects!r}.')
    clips = discover_clips(source)
    out_dir = osp.abspath(out_dir)
    os.makedirs(osp.join(out_dir, 'clips'), exist_ok=True)
    options = dict(
        objects=objects,
        stride=stride,
        max_frames=max_frames,
        orientation=orientation,
        jpeg_quality=jpeg_quality)
    records, converted, skipped = [], [], []
    bar = tqdm(clips, unit='clip', desc='Converting clips', disable=not progress)
    for clip in bar:
        bar.set_postfix_str(clip.video_id)
        record_path = osp.join(out_dir, 'clips', f'{clip.video_id}.json')
        signature = _signature(clip, options)
        if osp.isfile(record_path):
            record = load_json(record_path, 'clip record')
            if record.get('signature') == signature and osp.isdir(
                    osp.join(out_dir, 'images', clip.video_id)):
                records.append(record)
                skipped.append(clip.video_id)
                continue
        record = dict(convert_clip(clip, out_dir, **options), signature=signature)
        with atomic_write(record_path, 'w') as f:
            json.dump(record, f)
        records.append(record)
        converted.append(clip.video_id)
    bar.close()
    splits = split_videos([r['video_id'] for r in records], split, seed)
    ann_files = write_split_files(out_dir, records, splits)
    by_id = {r['video_id']: r for r in records}
    return dict(
        converted=converted,
        skipped=skipped,
        splits=splits,
        ann_files=ann_files,
        num_images={name: sum(len(by_id[v]['images']) for v in splits[name])
                    for name in SPLITS})

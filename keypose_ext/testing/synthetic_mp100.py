"""A small synthetic stand-in for MP-100, written in MP-100's own layout.

Each category is a random planar "object" with its own keypoint count (1 to 68) and
skeleton; every image shows one instance of it drawn with OpenCV (a filled outline,
the skeleton's edges and one coloured dot per keypoint) over a cluttered background.
Some keypoints are unlabelled (``v=0``, coordinates 0 as in MP-100) and some are
labelled but hidden under an occluder (``v=1``). The output is what
:class:`MP100EpisodicDataset` reads for the real dataset::

    out_dir/
      images/<category_name>/<category_name>_<n>.jpg     real JPEG files
      annotations/mp100_split{s}_{train,val,test}.json   COCO style, one per split
      category_splits.json                               {"train": [...], "val": [...],
                                                          "test": [...]} of split 1
      category_splits_split{s}.json                      the same for every split s

Categories are split into disjoint train/val/test sets (about 70/10/20 %, at least
one each) and the partition rotates with the split number, as MP-100's five splits
do. Skeletons in the JSON use COCO's 1-based keypoint indices.
"""
import json
import os
import os.path as osp
from typing import Dict, List, Sequence

import cv2
import numpy as np

from keypose_ext.utils.errors import UserRuntimeError, UserValueError
from keypose_ext.utils.io import atomic_write

DEFAULT_KEYPOINT_COUNTS = (1, 3, 5, 8, 12, 17, 24, 68)


def _category_template(rng: np.random.Generator, num_keypoints: int):
    """Keypoints of one category in a unit frame (K, 2) and its 0-based skeleton.

    Points lie on a random star-shaped outline (sorted by angle), so the drawn
    object has a recognisable shape and every keypoint a distinct place on it.
    """
    if num_keypoints == 1:
        return np.zeros((1, 2), np.float32), []
    angles = np.sort(rng.uniform(0, 2 * np.pi, num_keypoints))
    # spread the angles so no two keypoints sit on top of each other
    angles = 0.5 * angles + 0.5 * np.linspace(0, 2 * np.pi, num_keypoints, endpoint=False)
    radii = rng.uniform(0.45, 1.0, num_keypoints)
    pts = np.stack([np.cos(angles) * radii, np.sin(angles) * radii], axis=1)
    # a random spanning tree (every point joined to an earlier one) plus a few
    # extra edges: a connected pose graph that differs per category
    skeleton = [[i, int(rng.integers(0, i))] for i in range(1, num_keypoints)]
    for _ in range(num_keypoints // 4):
        a, b = rng.choice(num_keypoints, 2, replace=False)
        if [a, b] not in skeleton and [b, a] not in skeleton:
            skeleton.append([int(a), int(b)])
    return pts.astype(np.float32), skeleton


def _keypoint_colour(i: int, k: int):
    hsv = np.uint8([[[int(179 * i / max(k, 1)), 255, 255]]])
    return tuple(int(c) for c in cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0])


def _draw_instance(rng, img, template, skeleton, body_colour, invisible_ratio, occluded_ratio):
    """Draw one instance into ``img``; returns (keypoints (K,3) list, bbox xywh)."""
    h, w = img.shape[:2]
    k = len(template)
    size = rng.uniform(0.25, 0.36) * min(w, h)
    theta = rng.uniform(-np.pi / 6, np.pi / 6)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]], np.float32)
    aspect = np.array([rng.uniform(0.8, 1.2), rng.uniform(0.8, 1.2)], np.float32)
    pts = (template * aspect) @ rot.T * size
    pts += rng.normal(0, 0.03 * size, pts.shape)
    margin = size * 1.3
    centre = np.array([rng.uniform(margin, w - margin),
                       rng.uniform(margin, h - margin)], np.float32)
    pts = pts + centre

    if k >= 3:
        cv2.fillPoly(img, [np.round(pts).astype(np.int32)], body_colour, lineType=cv2.LINE_AA)
    else:
        cv2.circle(img, tuple(int(v) for v in np.round(pts.mean(0))), int(size * 0.45), body_colour,
                   -1, cv2.LINE_AA)
    for a, b in skeleton:
        cv2.line(img, tuple(int(v) for v in np.round(pts[a])),
                 tuple(int(v) for v in np.round(pts[b])), (235, 235, 235), 2, cv2.LINE_AA)
    radius = max(2, int(round(size * 0.06)))
    for i, p in enumerate(pts):
        cv2.circle(img, tuple(int(v) for v in np.round(p)), radius, _keypoint_colour(i, k), -1,
                   cv2.LINE_AA)

    vis = np.full(k, 2, np.int64)
    draws = rng.uniform(size=k)
    vis[draws < invisible_ratio + occluded_ratio] = 1
    vis[draws < invisible_ratio] = 0
    if not (vis > 0).any():  # every instance keeps at least one labelled point
        vis[int(rng.integers(k))] = 2
    for i in np.flatnonzero(vis == 1):  # labelled but hidden: grey occluder
        c = np.round(pts[i]).astype(int)
        cv2.rectangle(img, tuple(c - radius - 1), tuple(c + radius + 1), (128, 128, 128), -1)
    for i in np.flatnonzero(vis == 2):  # an occluder never hides a visible point
        cv2.circle(img, tuple(int(v) for v in np.round(pts[i])), radius, _keypoint_colour(i, k), -1,
                   cv2.LINE_AA)

    x0, y0 = pts.min(0) - radius - 2
    x1, y1 = pts.max(0) + radius + 2
    if k == 1:
        half = size * 0.5
        x0, y0, x1, y1 = pts[0, 0] - half, pts[0, 1] - half, pts[0, 0] + half, \
            pts[0, 1] + half
    x0, y0 = max(0.0, float(x0)), max(0.0, float(y0))
    x1, y1 = min(w - 1.0, float(x1)), min(h - 1.0, float(y1))
    kpts = []
    for (x, y), v in zip(pts, vis):
        kpts += [0.0, 0.0, 0] if v == 0 else [round(float(x), 2), round(float(y), 2), int(v)]
    return kpts, [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)]


def _split_categories(cat_ids: Sequence[int], split: int, num_splits: int) -> Dict[str, List[int]]:
    n = len(cat_ids)
    if n < 3:
        raise UserValueError(f'num_categories must be at least 3 (one each for train, '
                             f'val and test), got {n}')
    n_val = max(1, int(round(0.1 * n)))
    n_test = max(1, int(round(0.2 * n)))
    # rotate the partition so that different splits test different categories
    shift = int(round((split - 1) * n / max(num_splits, 1)))
    rolled = list(np.roll(np.asarray(cat_ids), -shift))
    test, val, train = (rolled[:n_test], rolled[n_test:n_test + n_val], rolled[n_test + n_val:])
    return dict(
        train=sorted(int(c) for c in train),
        val=sorted(int(c) for c in val),
        test=sorted(int(c) for c in test))


def make_synthetic_mp100(out_dir: str,
                         keypoint_counts: Sequence[int] = DEFAULT_KEYPOINT_COUNTS,
                         images_per_category: int = 20,
                         num_splits: int = 1,
                         image_size_range: Sequence[int] = (112, 176),
                         invisible_ratio: float = 0.1,
                         occluded_ratio: float = 0.05,
                         seed: int = 0,
                         jpeg_quality: int = 92) -> dict:
    """Write a synthetic MP-100 into ``out_dir``; returns a summary dict.

    Args:
        out_dir (str): Output root (created if needed).
        keypoint_counts (Sequence[int]): One entry per category: its number of
            keypoints (1 to 68). At least 3 categories.
        images_per_category (int): Images (one instance each) per category.
        num_splits (int): Number of MP-100-style category splits to write.
        image_size_range (Sequence[int]): Min and max image side in pixels.
        invisible_ratio (float): Fraction of unlabelled keypoints (``v=0``).
        occluded_ratio (float): Fraction of labelled but occluded keypoints
            (``v=1``).
        seed (int): Random seed; the output is a pure function of the arguments.
        jpeg_quality (int): JPEG quality of the written images.

    Returns:
        dict: ``categories`` (id -> name, keypoint count), ``splits``
        (split -> {train/val/test: ids}), ``num_images`` and ``ann_files``.
    """
    counts = [int(k) for k in keypoint_counts]
    bad = [k for k in counts if not 1 <= k <= 68]
    if bad:
        raise UserValueError(f'keypoint_counts must lie in 1..68 as in MP-100, got {bad}')
    if images_per_category < 1:
        raise UserValueError(f'images_per_category must be >= 1, got {images_per_category}')
    rng = np.random.default_rng(seed)
    os.makedirs(osp.join(out_dir, 'annotations'), exist_ok=True)
    lo, hi = int(image_size_range[0]), int(image_size_range[1])

    categories, images, annotations = [], [], []
    img_id = ann_id = 0
    for cat_idx, k in enumerate(counts):
        cat_id = cat_idx + 1
        name = f'synthetic_{cat_id:02d}_{k}kp'
        cat_rng = np.random.default_rng([seed, cat_id])
        template, skeleton = _category_template(cat_rng, k)
        body_colour = tuple(int(c) for c in cat_rng.integers(40, 200, 3))
        categories.append(
            dict(
                supercategory='synthetic',
                id=cat_id,
                name=name,
                keypoints=[f'{name}_kp{i}' for i in range(k)],
                skeleton=[[a + 1, b + 1] for a, b in skeleton]))  # COCO: 1-based
        os.makedirs(osp.join(out_dir, 'images', name), exist_ok=True)
        for n in range(images_per_category):
            w, h = (int(v) for v in rng.integers(lo, hi + 1, 2))
            img = rng.integers(0, 90, (h, w, 3), dtype=np.uint8)
            img = cv2.GaussianBlur(img, (5, 5), 0)
            for _ in range(4):  # clutter, so the object is not the only edge
                p0 = tuple(int(v) for v in rng.integers(0, [w, h]))
                p1 = tuple(int(v) for v in rng.integers(0, [w, h]))
                cv2.line(img, p0, p1, tuple(int(c) for c in rng.integers(0, 120, 3)), 1,
                         cv2.LINE_AA)
            kpts, bbox = _draw_instance(rng, img, template, skeleton, body_colour, invisible_ratio,
                                        occluded_ratio)
            file_name = f'{name}/{name}_{n:03d}.jpg'
            ok, jpeg = cv2.imencode('.jpg', img, [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])
            if not ok:
                raise UserRuntimeError(f'could not encode {file_name} as JPEG')
            with atomic_write(osp.join(out_dir, 'images', file_name)) as f:
                f.write(jpeg.tobytes())
            img_id += 1
            ann_id += 1
            images.append(dict(id=img_id, file_name=file_name, width=w, height=h))
            annotations.append(
                dict(
                    id=ann_id,
                    image_id=img_id,
                    category_id=cat_id,
                    bbox=bbox,
                    area=round(bbox[2] * bbox[3], 2),
                    iscrowd=0,
                    num_keypoints=int(sum(1 for v in kpts[2::3] if v > 0)),
                    keypoints=kpts))

    cat_ids = [c['id'] for c in categories]
    splits, ann_files = {}, []
    img_by_id = {im['id']: im for im in images}
    for s in range(1, num_splits + 1):
        split = _split_categories(cat_ids, s, num_splits)
        splits[s] = split
        for subset, ids in split.items():
            anns = [a for a in annotations if a['category_id'] in ids]
            used = sorted({a['image_id'] for a in anns})
            data = dict(
                info=dict(description=f'synthetic MP-100 split {s} {subset}'),
                images=[img_by_id[i] for i in used],
                annotations=anns,
                categories=[c for c in categories if c['id'] in ids])
            path = osp.join(out_dir, 'annotations', f'mp100_split{s}_{subset}.json')
            with atomic_write(path, 'w') as f:
                json.dump(data, f)
            ann_files.append(path)
        with atomic_write(osp.join(out_dir, f'category_splits_split{s}.json'), 'w') as f:
            json.dump(split, f, indent=1)
    with atomic_write(osp.join(out_dir, 'category_splits.json'), 'w') as f:
        json.dump(splits[1], f, indent=1)
    return dict(
        categories={
            c['id']: dict(name=c['name'], num_keypoints=len(c['keypoints']))
            for c in categories
        },
        splits=splits,
        num_images=len(images),
        ann_files=ann_files)


def synthetic_summary(summary: dict) -> str:
    """One human-readable paragraph for a :func:`make_synthetic_mp100` result."""
    lines = [f'{summary["num_images"]} images, {len(summary["categories"])} categories:']
    for cid, c in summary['categories'].items():
        lines.append(f'  {cid:3d} {c["name"]} ({c["num_keypoints"]} keypoints)')
    for s, split in summary['splits'].items():
        lines.append(f'  split {s}: ' + ', '.join(f'{k}={v}' for k, v in split.items()))
    return '\n'.join(lines)


__all__ = ['make_synthetic_mp100', 'synthetic_summary', 'DEFAULT_KEYPOINT_COUNTS']

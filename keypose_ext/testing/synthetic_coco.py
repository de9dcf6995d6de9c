"""A tiny synthetic COCO person-keypoints set, in COCO-2017's own layout.

Each image shows one or two stick figures drawn with OpenCV (limbs along COCO's
skeleton, a dot per keypoint) over noise; the annotation lists their 17 keypoints
(``v=2``), box, area and ``num_keypoints`` exactly as COCO does, so mmpose's
``CocoDataset`` and ``CocoMetric`` read it like the real thing::

    root/annotations/person_keypoints_{train,val}2017.json
    root/images/{train,val}2017/000000000001.jpg ...

Used by the tests, the memory benchmark and as a smoke-test dataset
(``python tools/dataset_converters/make_synthetic_coco.py data/coco_tiny``).
"""
import json
import os
import os.path as osp
from typing import Dict, Sequence

import cv2
import numpy as np

from keypose_ext.utils.io import atomic_write


def coco_keypoint_info():
    """``(names, skeleton)`` of COCO's 17 keypoints from mmpose's own COCO metainfo
    (the file CheckedCocoDataset uses); the skeleton 1-based, as in COCO's JSON."""
    from mmpose.datasets.datasets.utils import parse_pose_metainfo

    from keypose_ext.datasets.checked_coco_dataset import CheckedCocoDataset
    meta = parse_pose_metainfo(dict(CheckedCocoDataset.METAINFO))
    names = [meta['keypoint_id2name'][i] for i in range(meta['num_keypoints'])]
    return names, [[int(a) + 1, int(b) + 1] for a, b in meta['skeleton_links']]


# A frontal person in a unit box (x right, y down), keypoints in COCO's order; left is
# the image's right side.
_TEMPLATE = np.array([[0.50, 0.08], [0.55, 0.05], [0.45, 0.05], [0.60, 0.07], [0.40, 0.07],
                      [0.68, 0.22], [0.32, 0.22], [0.78, 0.38], [0.22, 0.38], [0.82, 0.52],
                      [0.18, 0.52], [0.62, 0.55], [0.38, 0.55], [0.63, 0.75], [0.37, 0.75],
                      [0.64, 0.95], [0.36, 0.95]], np.float32)


def _person(rng: np.random.Generator, img_w: int, img_h: int):
    """Keypoints (17, 2) and box (x, y, w, h) of one random person inside the image."""
    bw = rng.uniform(0.3, 0.5) * img_w
    bh = min(bw * rng.uniform(1.8, 2.4), 0.9 * img_h)
    x0 = rng.uniform(0, img_w - bw)
    y0 = rng.uniform(0, img_h - bh)
    kpts = _TEMPLATE + rng.normal(0, 0.02, _TEMPLATE.shape).astype(np.float32)
    kpts = np.clip(kpts, 0.01, 0.99) * [bw, bh] + [x0, y0]
    return kpts.astype(np.float32), [float(x0), float(y0), float(bw), float(bh)]


def make_synthetic_coco(root: str,
                        num_images: Dict[str, int] = None,
                        image_size: Sequence[int] = (160, 120),
                        max_persons: int = 2,
                        seed: int = 0) -> Dict[str, str]:
    """Write the set; returns ``{split: annotation json path}``.

    Args:
        root: Output folder (the ``data_root`` of the configs).
        num_images: Images per split, default ``{'train': 6, 'val': 4}``.
        image_size: ``(W, H)`` of every image.
        max_persons: 1..max persons per image.
    """
    num_images = num_images or {'train': 6, 'val': 4}
    names, skeleton = coco_keypoint_info()
    img_w, img_h = image_size
    rng = np.random.default_rng(seed)
    out = {}
    img_id, ann_id = 0, 0
    for split, n in num_images.items():
        img_dir = osp.join(root, 'images', f'{split}2017')
        ann_dir = osp.join(root, 'annotations')
        os.makedirs(img_dir, exist_ok=True)
        os.makedirs(ann_dir, exist_ok=True)
        images, annotations = [], []
        for _ in range(n):
            img_id += 1
            name = f'{img_id:012d}.jpg'
            img = rng.integers(0, 80, (img_h, img_w, 3), dtype=np.uint8)
            for _ in range(int(rng.integers(1, max_persons + 1))):
                ann_id += 1
                kpts, box = _person(rng, img_w, img_h)
                for a, b in skeleton:
                    cv2.line(img, tuple(int(v) for v in kpts[a - 1]),
                             tuple(int(v) for v in kpts[b - 1]), (200, 200, 200), 2)
                for k, (x, y) in enumerate(kpts):
                    color = (int(15 * k), 255 - int(15 * k), 128)
                    cv2.circle(img, (int(x), int(y)), 2, color, -1)
                flat = np.concatenate([kpts, np.full((17, 1), 2, np.float32)], 1)
                annotations.append(
                    dict(
                        id=ann_id,
                        image_id=img_id,
                        category_id=1,
                        iscrowd=0,
                        bbox=box,
                        area=float(box[2] * box[3] * 0.6),
                        num_keypoints=17,
                        keypoints=[round(float(v), 2) for v in flat.reshape(-1)],
                        segmentation=[]))
            cv2.imwrite(osp.join(img_dir, name), img)
            images.append(dict(id=img_id, file_name=name, width=img_w, height=img_h))
        ann = dict(
            info=dict(description='synthetic COCO person keypoints (keypose_ext)'),
            images=images,
            annotations=annotations,
            categories=[
                dict(
                    id=1, name='person', supercategory='person', keypoints=names, skeleton=skeleton)
            ])
        path = osp.join(ann_dir, f'person_keypoints_{split}2017.json')
        with atomic_write(path, 'w') as f:
            json.dump(ann, f)
        out[split] = path
    return out

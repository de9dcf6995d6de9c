import json
import os
import runpy
import subprocess
import sys

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO

from keypose_ext.testing.synthetic_mp100 import make_synthetic_mp100

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')


def test_writes_mp100_layout_with_real_jpegs(tmp_path):
    counts = (1, 4, 9, 17, 68)
    summary = make_synthetic_mp100(
        str(tmp_path), keypoint_counts=counts, images_per_category=6, num_splits=2, seed=3)
    assert summary['num_images'] == 30
    split = json.load(open(tmp_path / 'category_splits.json'))
    assert split == summary['splits'][1]
    ids = sorted(split['train'] + split['val'] + split['test'])
    assert ids == [1, 2, 3, 4, 5]  # disjoint and complete
    assert summary['splits'][1] != summary['splits'][2]  # the partition rotates
    seen_invisible = False
    for subset in ('train', 'val', 'test'):
        coco = COCO(str(tmp_path / 'annotations' / f'mp100_split1_{subset}.json'))
        assert sorted(coco.getCatIds()) == split[subset]
        for ann in coco.loadAnns(coco.getAnnIds()):
            cat = coco.loadCats(ann['category_id'])[0]
            k = len(cat['keypoints'])
            assert k == counts[ann['category_id'] - 1]
            assert len(ann['keypoints']) == 3 * k
            assert all(1 <= i <= k for e in cat['skeleton'] for i in e)  # 1-based
            img_info = coco.loadImgs(ann['image_id'])[0]
            assert img_info['file_name'].startswith(cat['name'] + '/')
            img = cv2.imread(str(tmp_path / 'images' / img_info['file_name']))
            assert img.shape[:2] == (img_info['height'], img_info['width'])
            kp = np.array(ann['keypoints'], float).reshape(-1, 3)
            x, y, w, h = ann['bbox']
            lab = kp[:, 2] > 0
            seen_invisible |= not lab.all()
            assert (kp[~lab, :2] == 0).all()  # MP-100: unlabelled = 0, 0, 0
            assert ((kp[lab, 0] >= x - 1) & (kp[lab, 0] <= x + w + 1)).all()
            assert ((kp[lab, 1] >= y - 1) & (kp[lab, 1] <= y + h + 1)).all()
            # a visible (v=2) keypoint is drawn: a saturated dot, not background
            for px, py, v in kp:
                if v == 2:
                    b, g, r = img[int(round(py)), int(round(px))].astype(int)
                    assert max(b, g, r) - min(b, g, r) > 60 or max(b, g, r) > 150
    assert seen_invisible
    with open(tmp_path / 'images' / 'synthetic_01_1kp' / 'synthetic_01_1kp_000.jpg', 'rb') as f:
        assert f.read(3) == b'\xff\xd8\xff'  # JPEG


def test_deterministic_and_bad_arguments(tmp_path):
    a = make_synthetic_mp100(str(tmp_path / 'a'), keypoint_counts=(2, 3, 4), images_per_category=2)
    b = make_synthetic_mp100(str(tmp_path / 'b'), keypoint_counts=(2, 3, 4), images_per_category=2)
    ja = json.load(open(tmp_path / 'a/annotations/mp100_split1_train.json'))
    jb = json.load(open(tmp_path / 'b/annotations/mp100_split1_train.json'))
    assert ja == jb and a['splits'] == b['splits']
    with pytest.raises(ValueError, match='1..68'):
        make_synthetic_mp100(str(tmp_path / 'c'), keypoint_counts=(2, 69, 3))
    with pytest.raises(ValueError, match='at least 3'):
        make_synthetic_mp100(str(tmp_path / 'c'), keypoint_counts=(2, 3))


def test_command_line(tmp_path):
    out = subprocess.run([
        sys.executable,
        os.path.join(ROOT, 'tools', 'dataset_converters', 'make_synthetic_mp100.py'), '--out',
        str(tmp_path / 'd'), '--keypoint-counts', '2', '3', '4', '--images-per-category', '2',
        '--num-splits', '3'
    ],
                         capture_output=True,
                         text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert 'split 3' in out.stdout
    assert (tmp_path / 'd/annotations/mp100_split3_test.json').is_file()
    cli = runpy.run_path(
        os.path.join(ROOT, 'tools', 'dataset_converters', 'make_synthetic_mp100.py'))
    with pytest.raises(ValueError, match='keypoint_counts must lie in 1..68'):
        cli['main'](['--out', str(tmp_path / 'e'), '--keypoint-counts', '0', '3', '4'])

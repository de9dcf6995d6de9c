"""Synthetic bottle video: exact keypoints, real video files, both formats."""
import json

import cv2
import numpy as np
import pytest

from keypose_ext.datasets.bottle_metainfo import BOX_EDGES
from keypose_ext.testing.synthetic_bottle import (DEFAULT_BOX_SIZE, PinholeCamera, _background,
                                                  _face_textures, box_keypoints_local,
                                                  make_bottle_dataset, object_poses, render_frame,
                                                  render_synthetic_bottle_video)


@pytest.mark.parametrize('ext', ['.mp4', '.avi'])
def test_video_is_readable_and_keypoints_are_projections(tmp_path, ext):
    video = str(tmp_path / f'bottle{ext}')
    gt = render_synthetic_bottle_video(video, num_frames=6, size=(96, 64))
    cap = cv2.VideoCapture(video)
    frames = []
    while True:
        ok, img = cap.read()
        if not ok:
            break
        frames.append(img)
    assert len(frames) == 6 and frames[0].shape == (64, 96, 3)
    cam = gt['camera']
    for f in gt['frames']:
        p = f['keypoints_3d']
        u = cam.fx * p[:, 0] / p[:, 2] + cam.cx
        v = cam.fy * p[:, 1] / p[:, 2] + cam.cy
        np.testing.assert_allclose(f['keypoints'], np.stack([u, v], 1))
        np.testing.assert_allclose(f['depth'], p[:, 2])
        assert (f['depth'] > 0.5).all()


def test_corner_order_matches_box_edges():
    """Objectron order: each of the 12 skeleton edges is one box side, and
    the centre is the corners' mean."""
    rot, trans = object_poses(5, seed=3)[2]
    pts = box_keypoints_local(DEFAULT_BOX_SIZE) @ rot.T + trans
    lengths = sorted(round(float(np.linalg.norm(pts[a] - pts[b])), 6) for a, b in BOX_EDGES)
    expected = sorted([DEFAULT_BOX_SIZE[0]] * 4 + [DEFAULT_BOX_SIZE[1]] * 4 +
                      [DEFAULT_BOX_SIZE[2]] * 4)
    np.testing.assert_allclose(lengths, expected, atol=1e-6)
    np.testing.assert_allclose(pts[1:].mean(0), pts[0], atol=1e-9)


def test_rendered_box_covers_exactly_its_projected_hull():
    cam = PinholeCamera.for_size(160, 120)
    rng = np.random.default_rng(0)
    textures = _face_textures(rng)
    black = np.zeros((120, 160, 3), np.float32)
    for rot, trans in object_poses(4, seed=1):
        pts = box_keypoints_local(DEFAULT_BOX_SIZE) @ rot.T + trans
        img = render_frame(black, textures, pts, rot, cam)
        drawn = img.max(axis=2) > 0
        hull = cv2.convexHull(cam.project(pts[1:]).astype(np.float32))
        mask = np.zeros((120, 160), np.uint8)
        cv2.fillConvexPoly(mask, np.round(hull).astype(np.int32), 1)
        inner = cv2.erode(mask, np.ones((3, 3), np.uint8)) > 0
        outer = cv2.dilate(mask, np.ones((3, 3), np.uint8)) > 0
        assert drawn[inner].mean() > 0.99
        assert not drawn[~outer].any()


def test_background_and_motion_depend_on_seed():
    a = object_poses(8, seed=0)
    b = object_poses(8, seed=1)
    assert not np.allclose(a[3][0], b[3][0])
    np.testing.assert_array_equal(a[3][0], object_poses(8, seed=0)[3][0])
    bg0 = _background(np.random.default_rng(0), 32, 24)
    assert not np.allclose(bg0, _background(np.random.default_rng(1), 32, 24))


def test_make_bottle_dataset_json_and_objectron_agree(tmp_path):
    a = make_bottle_dataset(str(tmp_path / 'a'), num_frames=8, size=(96, 64))
    b = make_bottle_dataset(
        str(tmp_path / 'b'),
        num_frames=8,
        size=(96, 64),
        annotation_format='objectron',
        source_dir=str(tmp_path / 'src'))
    assert (tmp_path / 'src' / 'annotation.pbdata').is_file()
    assert a['num_images'] == b['num_images'] == 8
    coco_a = json.load(open(a['ann_file']))
    coco_b = json.load(open(b['ann_file']))
    for ann_a, ann_b, f in zip(coco_a['annotations'], coco_b['annotations'],
                               a['ground_truth']['frames']):
        kpt = np.array(ann_a['keypoints']).reshape(9, 3)
        np.testing.assert_allclose(kpt[:, :2], f['keypoints'], atol=1e-3)
        np.testing.assert_allclose(
            np.array(ann_b['keypoints']).reshape(9, 3)[:, :2], kpt[:, :2], atol=1e-3)
        np.testing.assert_allclose(ann_a['keypoints_depth'], f['depth'], atol=1e-5)
        np.testing.assert_allclose(ann_b['keypoints_3d'], ann_a['keypoints_3d'], atol=1e-5)
    assert len(list((tmp_path / 'a' / 'images').glob('*.jpg'))) == 8


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match='.mp4'):
        render_synthetic_bottle_video(str(tmp_path / 'x.mkv'), 2)
    with pytest.raises(ValueError, match='num_frames'):
        render_synthetic_bottle_video(str(tmp_path / 'x.mp4'), 0)
    with pytest.raises(ValueError, match='annotation_format'):
        make_bottle_dataset(str(tmp_path / 'd'), annotation_format='xml')

import os
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from mmengine.structures import InstanceData
from mmpose.datasets.datasets.utils import parse_pose_metainfo
from mmpose.engine.hooks import PoseVisualizationHook
from mmpose.registry import VISUALIZERS
from mmpose.structures import PoseDataSample

GT_RGB = (0, 200, 0)
PRED_RGB = (230, 0, 230)
# Objectron order: corner v = 1 + 4*bx + 2*by + bz; edges join corners that
# differ in one bit.
EDGES = [(1, 2), (3, 4), (5, 6), (7, 8), (1, 3), (2, 4), (5, 7), (6, 8), (1, 5), (2, 6), (3, 7),
         (4, 8)]
NAMES = ['centre'] + [f'corner_{i}' for i in range(1, 9)]


def _metainfo():
    return parse_pose_metainfo(
        dict(
            dataset_name='tiny_bottle',
            keypoint_info={
                i: dict(name=n, id=i, color=[255, 0, 0], type='', swap='')
                for i, n in enumerate(NAMES)
            },
            skeleton_info={
                i: dict(link=(NAMES[a], NAMES[b]), id=i, color=[0, 0, 255])
                for i, (a, b) in enumerate(EDGES)
            },
            joint_weights=[1.0] * 9,
            sigmas=[0.05] * 9))


def _project_box(cx, cy, z, size=0.12, f=500.0):
    """Pinhole projection of a cube's centre + 8 corners; (9, 2), (9,)."""
    pts = [(0.0, 0.0, 0.0)]
    for bx in (0, 1):
        for by in (0, 1):
            for bz in (0, 1):
                pts.append(((bx - 0.5) * size, (by - 0.5) * size, (bz - 0.5) * size))
    pts = np.array(pts) + [0.02, 0.01, z]  # slight offset: oblique view
    uv = f * pts[:, :2] / pts[:, 2:] + [cx, cy]
    return uv, pts[:, 2]


def _sample(img_path=None):
    gt_uv, gt_z = _project_box(100, 150, 0.8)
    pred_uv, pred_z = _project_box(260, 150, 0.9)
    s = PoseDataSample(metainfo=dict(img_path=img_path, ori_shape=(240, 360)))
    s.gt_instances = InstanceData(
        keypoints=gt_uv[None],
        keypoints_depth=gt_z[None],
        keypoints_visible=np.ones((1, 9)),
        bboxes=np.array([[0, 0, 360, 240]], np.float32),
        bbox_scores=np.ones(1, np.float32))
    s.pred_instances = InstanceData(
        keypoints=pred_uv[None], keypoints_depth=pred_z[None], keypoint_scores=np.ones((1, 9)))
    return s, gt_uv, pred_uv


def _has_colour(img_bgr, xy, rgb, r=1):
    x, y = int(round(xy[0])), int(round(xy[1]))
    patch = img_bgr[y - r:y + r + 1, x - r:x + r + 1]
    return (patch == np.array(rgb[::-1], np.uint8)).all(-1).any()


def _check_edges(img_bgr, gt_uv, pred_uv):
    for a, b in EDGES:
        for uv, rgb in ((gt_uv, GT_RGB), (pred_uv, PRED_RGB)):
            mid = (uv[a] + uv[b]) / 2
            assert _has_colour(img_bgr, mid, rgb), (a, b, rgb)
    assert _has_colour(img_bgr, gt_uv[0], GT_RGB)
    assert _has_colour(img_bgr, pred_uv[0], PRED_RGB)
    # the legend (top-left) has both colours
    legend = img_bgr[:40, :80].reshape(-1, 3)
    for rgb in (GT_RGB, PRED_RGB):
        assert (legend == np.array(rgb[::-1], np.uint8)).all(-1).any()


def _build(name):
    vis = VISUALIZERS.build(
        dict(type='BottleBoxVisualizer', name=name, gt_color=GT_RGB, pred_color=PRED_RGB))
    vis.set_dataset_meta(_metainfo())
    return vis


def test_both_boxes_on_one_frame(tmp_path):
    vis = _build('bottle_vis_direct')
    s, gt_uv, pred_uv = _sample()
    img = np.full((240, 360, 3), 40, np.uint8)
    out = tmp_path / 'frame.png'
    drawn = vis.add_datasample('f', img, s, out_file=str(out))
    assert drawn.shape == img.shape  # one frame, not side by side
    written = cv2.imread(str(out))
    _check_edges(written, gt_uv, pred_uv)
    # nothing of either colour away from the boxes (bottom-right corner)
    corner = written[200:, 320:].reshape(-1, 3)
    assert (corner == 40).all()


def test_draw_pred_false_and_missing_skeleton(tmp_path):
    vis = _build('bottle_vis_gt_only')
    s, gt_uv, _ = _sample()
    drawn = vis.add_datasample(
        'f',
        np.zeros((240, 360, 3), np.uint8),
        s,
        draw_pred=False,
        out_file=str(tmp_path / 'a.png'))
    assert not (drawn == np.array(PRED_RGB, np.uint8)).all(-1).any()
    assert _has_colour(drawn[..., ::-1], (gt_uv[1] + gt_uv[2]) / 2, GT_RGB)
    bare = VISUALIZERS.build(dict(type='BottleBoxVisualizer', name='bare_vis'))
    with pytest.raises(ValueError, match='skeleton'):
        bare.add_datasample('f', np.zeros((20, 20, 3), np.uint8), s)


def test_pose_visualization_hook_show_dir(tmp_path):
    """What tools/test.py --show-dir runs: the hook passes draw_gt=False, the
    frame still shows the true box as well as the prediction."""
    img_path = tmp_path / 'frame_0001.png'
    cv2.imwrite(str(img_path), np.full((240, 360, 3), 40, np.uint8))
    vis = _build('bottle_vis_hook')
    hook = PoseVisualizationHook(enable=True, out_dir='vis')
    assert hook._visualizer is vis
    runner = SimpleNamespace(
        work_dir=str(tmp_path),
        timestamp='ts',
        test_evaluator=SimpleNamespace(dataset_meta=_metainfo()))
    s, gt_uv, pred_uv = _sample(str(img_path))
    hook.after_test_iter(runner, 0, {}, [s])
    out_dir = tmp_path / 'ts' / 'vis'
    files = os.listdir(out_dir)
    assert files == ['frame_0001_0.png']
    _check_edges(cv2.imread(str(out_dir / files[0])), gt_uv, pred_uv)


# ----------------------------------------------------------------- lifted 3D boxes
K = np.array([[300.0, 0, 180], [0, 300.0, 120], [0, 0, 1]])


def _lifted_sample(shift=0.5, noise=0.0, video='v0', frame=0, img_path=None):
    """A true box 0.8 m ahead and a prediction moved by ``shift`` of its width
    along its own x axis (3D IoU (1 - s) / (1 + s)); ``noise`` jitters the
    predicted pixels so the raw keypoints are no box."""
    from keypose_ext.objectron.box3d import box_from_transformation, project_points
    rot = np.array([[0.8, 0, 0.6], [0, 1, 0], [-0.6, 0, 0.8]])
    size = np.array([0.16, 0.24, 0.12])
    true = box_from_transformation(rot, [0.0, 0.02, 0.8], size)
    pred = true + rot[:, 0] * size[0] * shift
    pred_uv = project_points(pred, K) + noise * np.random.default_rng(0).normal(size=(9, 2))
    s = PoseDataSample(
        metainfo=dict(
            img_path=img_path,
            ori_shape=(240, 360),
            camera_intrinsics=K,
            video_id=video,
            frame_index=frame))
    s.gt_instances = InstanceData(
        keypoints=project_points(true, K)[None],
        keypoints_depth=true[None, :, 2],
        keypoints_3d=true[None],
        keypoints_visible=np.ones((1, 9)))
    s.pred_instances = InstanceData(
        keypoints=pred_uv[None], keypoints_depth=pred[None, :, 2], keypoint_scores=np.ones((1, 9)))
    return s, true, pred


def test_lifted_boxes_top_view_and_iou(tmp_path):
    from keypose_ext.objectron.box3d import (box_from_transformation, fit_box, lift_keypoints,
                                             project_points)
    vis = _build('bottle_vis_lifted')
    s, true, pred = _lifted_sample(shift=1.25, noise=4.0)  # apart: no edge hides another
    drawn = vis.add_datasample(
        'f', np.full((240, 360, 3), 40, np.uint8), s, out_file=str(tmp_path / 'f.png'))
    bgr = drawn[..., ::-1]
    lifted = lift_keypoints(s.pred_instances.keypoints[0], s.pred_instances.keypoints_depth[0], K)
    fitted_uv = project_points(box_from_transformation(*fit_box(lifted)), K)
    raw_uv = s.pred_instances.keypoints[0]
    assert np.abs(fitted_uv - raw_uv).max() > 2  # the two look different
    _check_edges(bgr, project_points(true, K), fitted_uv)
    # The top view (bottom-left) shows both boxes.
    panel = bgr[240 - 76:, :76].reshape(-1, 3)
    for rgb in (GT_RGB, PRED_RGB):
        assert (panel == np.array(rgb[::-1], np.uint8)).all(-1).any()
    [(iou, counted)] = vis.iou_history['v0'].values()
    assert counted and iou == 0
    assert os.path.isfile(tmp_path / 'iou_v0.png')


def test_show_dir_writes_one_iou_plot_per_video(tmp_path):
    img_paths = []
    for i in range(5):
        img_paths.append(tmp_path / f'v{i % 2}_{i:06d}.png')
        cv2.imwrite(str(img_paths[-1]), np.full((240, 360, 3), 40, np.uint8))
    vis = _build('bottle_vis_hook_lifted')
    hook = PoseVisualizationHook(enable=True, out_dir='vis')
    runner = SimpleNamespace(
        work_dir=str(tmp_path),
        timestamp='ts',
        test_evaluator=SimpleNamespace(dataset_meta=_metainfo()))
    samples = [
        _lifted_sample(shift=0.1 * i, video=f'v{i % 2}', frame=i, img_path=str(p))[0]
        for i, p in enumerate(img_paths)
    ]
    hook.after_test_iter(runner, 0, {}, samples[:3])
    hook.after_test_iter(runner, 1, {}, samples[3:])
    files = sorted(os.listdir(tmp_path / 'ts' / 'vis'))
    assert files == ['iou_v0.png', 'iou_v1.png'] + sorted(f'{p.stem}_0.png' for p in img_paths)
    assert sorted(vis.iou_history['v0']) == [0, 2, 4]
    ious = [vis.iou_history['v0'][f][0] for f in (0, 2, 4)]
    np.testing.assert_allclose(ious, [(1 - s) / (1 + s) for s in (0, 0.2, 0.4)], atol=1e-6)
    plot = cv2.imread(str(tmp_path / 'ts' / 'vis' / 'iou_v0.png'))
    assert plot.shape == (240, 480, 3)
    assert (plot == (200, 0, 200)).all(-1).sum() > 20  # the IoU curve


def test_box_behind_the_camera_is_skipped():
    vis = _build('bottle_vis_behind')
    s, _, _ = _lifted_sample()
    s.pred_instances.keypoints_depth = -s.pred_instances.keypoints_depth
    drawn = vis.add_datasample('f', np.zeros((240, 360, 3), np.uint8), s)
    assert drawn.shape == (240, 360, 3)

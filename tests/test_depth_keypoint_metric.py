import numpy as np
import pytest
from mmengine.evaluator import Evaluator
from mmengine.structures import InstanceData
from mmpose.structures import PoseDataSample

K = 9


def _samples(n_samples=12, seed=0):
    """Random frames of different sizes, one instance each."""
    rng = np.random.default_rng(seed)
    samples, raw = [], []
    for i in range(n_samples):
        h, w = int(rng.integers(120, 480)), int(rng.integers(160, 640))
        gt = rng.uniform([0, 0], [w, h], (1, K, 2))
        pred = gt + rng.normal(0, 0.03 * max(w, h), (1, K, 2))
        gt_d = rng.uniform(0.3, 1.5, (1, K))
        pred_d = gt_d + rng.normal(0, 0.05, (1, K))
        vis = (rng.random((1, K)) > 0.2).astype(np.float32)
        x0, y0 = rng.uniform(0, 0.3 * w), rng.uniform(0, 0.3 * h)
        bbox = np.array([[x0, y0, x0 + rng.uniform(40, 0.6 * w), y0 + rng.uniform(40, 0.6 * h)]])
        s = PoseDataSample(metainfo=dict(ori_shape=(h, w), img_path=f'{i}'))
        s.gt_instances = InstanceData(
            keypoints=gt, keypoints_depth=gt_d, keypoints_visible=vis, bboxes=bbox)
        s.pred_instances = InstanceData(
            keypoints=pred, keypoints_depth=pred_d, keypoint_scores=np.ones((1, K)))
        samples.append(s)
        raw.append((gt[0], pred[0], gt_d[0], pred_d[0], vis[0] > 0, w, h, bbox[0]))
    return samples, raw


def _reference(raw, thr, normalize):
    """Plain loops, independent of the metric's vectorised code."""
    px, hits, depth, objectron = [], [], [], []
    for gt, pred, gt_d, pred_d, vis, w, h, bbox in raw:
        if normalize == 'frame':
            norm = max(w, h)
        else:
            norm = max(bbox[2] - bbox[0], bbox[3] - bbox[1])
        for j in range(K):
            if vis[j]:
                e = np.sqrt(((gt[j] - pred[j])**2).sum())
                px.append(e)
                hits.append(e <= thr * norm)
                depth.append(abs(gt_d[j] - pred_d[j]))
        corner = [
            np.hypot((gt[j, 0] - pred[j, 0]) / w, (gt[j, 1] - pred[j, 1]) / h) for j in range(1, 9)
        ]
        objectron.append(sum(corner) / 8)
    return dict(
        mean_px_error=np.mean(px),
        PCK=np.mean(hits),
        mean_depth_error=np.mean(depth),
        objectron_2d_error=np.mean(objectron))


@pytest.mark.parametrize('thr,normalize', [(0.05, 'frame'), (0.1, 'bbox')])
def test_matches_independent_numpy(thr, normalize):
    samples, raw = _samples()
    evaluator = Evaluator(dict(type='DepthKeypointMetric', pck_thr=thr, pck_normalize=normalize))
    # two batches, through the same to_dict path as the runner's loops
    evaluator.process(samples[:5])
    evaluator.process(samples[5:])
    res = evaluator.evaluate(len(samples))
    ref = _reference(raw, thr, normalize)
    assert set(res) == {f'bottle/{k}' for k in ref}
    for key, value in ref.items():
        assert res[f'bottle/{key}'] == pytest.approx(value, rel=1e-9), key
    assert 0 < res['bottle/PCK'] < 1  # the data exercise both outcomes


def test_perfect_prediction_is_zero_error():
    samples, _ = _samples(n_samples=3, seed=1)
    for s in samples:
        s.pred_instances.keypoints = s.gt_instances.keypoints.copy()
        s.pred_instances.keypoints_depth = s.gt_instances.keypoints_depth
    evaluator = Evaluator(dict(type='DepthKeypointMetric', prefix='val'))
    evaluator.process(samples)
    res = evaluator.evaluate(3)
    assert res == {
        'val/mean_px_error': 0.0,
        'val/PCK': 1.0,
        'val/mean_depth_error': 0.0,
        'val/objectron_2d_error': 0.0
    }


def test_clear_errors():
    samples, _ = _samples(n_samples=1)
    s = samples[0]
    del s.pred_instances.keypoints_depth
    evaluator = Evaluator(dict(type='DepthKeypointMetric'))
    with pytest.raises(ValueError, match='pred_instances.keypoints_depth'):
        evaluator.process([s])

    samples, _ = _samples(n_samples=1)
    s = samples[0]
    s.gt_instances = InstanceData(
        keypoints=s.gt_instances.keypoints[:, :8],
        keypoints_depth=s.gt_instances.keypoints_depth[:, :8],
        keypoints_visible=s.gt_instances.keypoints_visible[:, :8])
    s.pred_instances = InstanceData(
        keypoints=s.pred_instances.keypoints[:, :8],
        keypoints_depth=s.pred_instances.keypoints_depth[:, :8])
    with pytest.raises(ValueError, match='9 keypoints.*K=8'):
        evaluator.process([s])

    with pytest.raises(ValueError, match='pck_normalize'):
        Evaluator(dict(type='DepthKeypointMetric', pck_normalize='torso'))


def _objectron_reference(raw, keep):
    """Objectron's 2D error over the kept instances only (plain loops)."""
    errors = []
    for (gt, pred, _, _, _, w, h, _), k in zip(raw, keep):
        if k:
            errors.append(
                sum(
                    np.hypot((gt[j, 0] - pred[j, 0]) / w, (gt[j, 1] - pred[j, 1]) / h)
                    for j in range(1, 9)) / 8)
    return np.mean(errors)


def test_objectron_2d_error_counts_only_what_objectron_counts():
    """Objectron's eval.py keeps a box when visibility > 0.1, its centre is strictly
    inside the frame and it is in front of the camera; the other boxes' errors (made
    huge here) must not move the metric."""
    samples, raw = _samples(n_samples=8, seed=3)
    keep = [True] * 8
    cases = {
        1: 'low visibility',
        2: 'centre outside',
        3: 'behind (3D)',
        4: 'behind (depth)',
        5: 'visibility exactly 0.1'
    }
    for i, case in cases.items():
        s, (gt, pred, gt_d, pred_d, vis, w, h, bbox) = samples[i], raw[i]
        pred[:] = gt + 1000  # would dominate the mean
        s.pred_instances.keypoints = pred[None]
        if case == 'low visibility':
            s.set_metainfo(dict(objectron_visibility=0.05))
        elif case == 'visibility exactly 0.1':
            s.set_metainfo(dict(objectron_visibility=0.1))
        elif case == 'centre outside':
            gt[0] = (-3.0, h / 2)
            s.gt_instances.keypoints = gt[None]
            raw[i] = (gt, pred, gt_d, pred_d, vis, w, h, bbox)
        elif case == 'behind (3D)':
            s.gt_instances.keypoints_3d = np.full((1, 9, 3), -1.0)
        else:
            gt_d[0] = -0.5
            s.gt_instances.keypoints_depth = gt_d[None]
        keep[i] = False
    samples[6].set_metainfo(dict(objectron_visibility=0.11))  # counted
    evaluator = Evaluator(dict(type='DepthKeypointMetric'))
    evaluator.process(samples)
    res = evaluator.evaluate(len(samples))
    assert res['bottle/objectron_2d_error'] == pytest.approx(
        _objectron_reference(raw, keep), rel=1e-9)
    assert res['bottle/objectron_2d_error'] < 1  # the 1000-pixel errors were left out


def test_objectron_2d_error_nan_when_nothing_counts():
    samples, _ = _samples(n_samples=2, seed=4)
    for s in samples:
        s.set_metainfo(dict(objectron_visibility=0.0))
    evaluator = Evaluator(dict(type='DepthKeypointMetric'))
    evaluator.process(samples)
    res = evaluator.evaluate(2)
    assert np.isnan(res['bottle/objectron_2d_error'])
    assert np.isfinite(res['bottle/mean_px_error'])


def test_objectron_2d_error_on_a_portrait_clip(tmp_path):
    """A clip written as real Objectron clips are (portrait frames, landscape cameras):
    the reader's pixels, depths, 3D points and visibilities go through the metric, and
    the frames Objectron skips (visibility 0.05, no object) are skipped."""
    from keypose_ext.objectron import read_objectron_clip
    from keypose_ext.testing.synthetic_objectron import write_objectron_clip
    vis = [1.0, 0.05, 1.0, 0.8, 1.0]
    clip = write_objectron_clip(
        str(tmp_path), num_frames=5, size=(72, 96), seed=5, visibility=vis, empty_frames=[2])
    frames = read_objectron_clip(clip['annotation']).frames
    rng = np.random.default_rng(0)
    samples, errors = [], []
    for f in frames:
        if not f.instances:
            continue
        inst = f.instances[0]
        pred = inst.keypoints + rng.normal(0, 2.0, (9, 2))
        s = PoseDataSample(
            metainfo=dict(
                ori_shape=(96, 72), img_path=str(f.frame_id), objectron_visibility=inst.visibility))
        s.gt_instances = InstanceData(
            keypoints=inst.keypoints[None],
            keypoints_depth=inst.depth[None],
            keypoints_3d=inst.keypoints_3d[None],
            keypoints_visible=np.ones((1, 9)))
        s.pred_instances = InstanceData(keypoints=pred[None], keypoints_depth=inst.depth[None])
        samples.append(s)
        if inst.visibility > 0.1:
            errors.append(
                np.mean(np.linalg.norm((pred[1:] - inst.keypoints[1:]) / [72, 96], axis=1)))
    assert len(samples) == 4 and len(errors) == 3
    evaluator = Evaluator(dict(type='DepthKeypointMetric'))
    evaluator.process(samples)
    res = evaluator.evaluate(len(samples))
    assert res['bottle/objectron_2d_error'] == pytest.approx(np.mean(errors), rel=1e-9)

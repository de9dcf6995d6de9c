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
        bbox = np.array([[x0, y0, x0 + rng.uniform(40, 0.6 * w),
                          y0 + rng.uniform(40, 0.6 * h)]])
        s = PoseDataSample(metainfo=dict(ori_shape=(h, w), img_path=f'{i}'))
        s.gt_instances = InstanceData(
            keypoints=gt, keypoints_depth=gt_d, keypoints_visible=vis,
            bboxes=bbox)
        s.pred_instances = InstanceData(
            keypoints=pred, keypoints_depth=pred_d,
            keypoint_scores=np.ones((1, K)))
        samples.append(s)
        raw.append((gt[0], pred[0], gt_d[0], pred_d[0], vis[0] > 0, w, h,
                    bbox[0]))
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
            np.hypot((gt[j, 0] - pred[j, 0]) / w, (gt[j, 1] - pred[j, 1]) / h)
            for j in range(1, 9)
        ]
        objectron.append(sum(corner) / 8)
    return dict(
        mean_px_error=np.mean(px), PCK=np.mean(hits),
        mean_depth_error=np.mean(depth),
        objectron_2d_error=np.mean(objectron))


@pytest.mark.parametrize('thr,normalize', [(0.05, 'frame'), (0.1, 'bbox')])
def test_matches_independent_numpy(thr, normalize):
    samples, raw = _samples()
    evaluator = Evaluator(
        dict(type='DepthKeypointMetric', pck_thr=thr,
             pck_normalize=normalize))
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
    assert res == {'val/mean_px_error': 0.0, 'val/PCK': 1.0,
                   'val/mean_depth_error': 0.0, 'val/objectron_2d_error': 0.0}


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

import math

import numpy as np
import pytest
from mmpose.registry import METRICS


def _pairs(seed=0, n=40):
    rng = np.random.default_rng(seed)
    pairs = []
    for i in range(n):
        k = int(rng.integers(1, 12))
        shots = int(rng.integers(1, 4))
        x0, y0 = rng.uniform(0, 50, 2)
        w, h = rng.uniform(20, 120, 2)
        gt = np.stack([rng.uniform(x0, x0 + w, k), rng.uniform(y0, y0 + h, k)], -1)
        pred = gt + rng.normal(0, 0.15 * max(w, h), (k, 2))
        if i % 7 == 0:
            pred[0] = np.nan  # not decoded (early end token)
        pairs.append(dict(
            gt=gt, pred=pred, box=(x0, y0, x0 + w, y0 + h),
            vis=(rng.uniform(size=k) > 0.2).astype(np.float32),
            sup_vis=(rng.uniform(size=(shots, k)) > 0.15).astype(np.float32)))
    return pairs


def _samples(pairs):
    return [dict(
        gt_instances=dict(keypoints=p['gt'][None], keypoints_visible=p['vis'][None],
                          bboxes=np.array([p['box']])),
        pred_instances=dict(keypoints=p['pred'][None]),
        support_keypoints_visible=p['sup_vis'], category_id=i % 3,
        category_name=f'c{i % 3}') for i, p in enumerate(pairs)]


def _plain_pck(pairs, thr):
    """Independent reading of the MP-100 rule, one keypoint at a time."""
    per_pair = []
    for p in pairs:
        x1, y1, x2, y2 = p['box']
        norm = max(x2 - x1, y2 - y1)
        hits = total = 0
        for j in range(len(p['gt'])):
            if p['vis'][j] <= 0 or any(s[j] <= 0 for s in p['sup_vis']):
                continue
            dx, dy = p['pred'][j] - p['gt'][j]
            d = math.sqrt(dx * dx + dy * dy)
            total += 1
            hits += int(not math.isnan(d) and d < thr * norm)
        if total:
            per_pair.append(hits / total)
    return sum(per_pair) / len(per_pair)


def test_matches_a_plain_computation_on_random_predictions():
    pairs = _pairs()
    metric = METRICS.build(dict(type='EpisodicPCKMetric', per_category=True))
    metric.process({}, _samples(pairs))
    res = metric.compute_metrics(metric.results)
    for t in (0.05, 0.1, 0.15, 0.2, 0.25):
        assert res[f'PCK@{t:g}'] == pytest.approx(_plain_pck(pairs, t), abs=1e-12)
    assert res['mPCK'] == pytest.approx(np.mean(
        [_plain_pck(pairs, t) for t in (0.05, 0.1, 0.15, 0.2, 0.25)]))
    assert 0.2 < res['PCK@0.2'] < 0.95  # the random errors are neither all in nor out
    dists = [np.linalg.norm(p['pred'][j] - p['gt'][j]) for p in pairs
             for j in range(len(p['gt']))
             if p['vis'][j] > 0 and (p['sup_vis'][:, j] > 0).all()]
    finite = [d for d in dists if np.isfinite(d)]
    assert res['EPE'] == pytest.approx(np.mean(finite))
    assert res['Missing'] == pytest.approx(1 - len(finite) / len(dists))
    assert res['PCK@0.2/c1'] == pytest.approx(_plain_pck(pairs[1::3], 0.2))


def test_support_visibility_and_empty_pairs():
    gt = np.array([[10., 10.], [20., 20.]])
    pred = np.array([[10., 10.], [90., 90.]])  # keypoint 1 is far off
    sample = dict(
        gt_instances=dict(keypoints=gt[None], keypoints_visible=np.ones((1, 2)),
                          bboxes=np.array([[0., 0., 50., 40.]])),
        pred_instances=dict(keypoints=pred[None]),
        support_keypoints_visible=np.array([[1., 1.], [1., 0.]]))
    empty = dict(sample, support_keypoints_visible=np.zeros((1, 2)))
    metric = METRICS.build(dict(type='EpisodicPCKMetric'))
    metric.process({}, [sample, empty])
    res = metric.compute_metrics(metric.results)
    # keypoint 1 is unlabelled in the second support: not counted; empty pair skipped
    assert res['PCK@0.2'] == 1.0 and res['EPE'] == 0.0
    assert set(res) == {'PCK@0.05', 'PCK@0.1', 'PCK@0.15', 'PCK@0.2', 'PCK@0.25',
                        'mPCK', 'EPE', 'Missing'}
    # threshold is strict and uses max(w, h) = 50: 0.2 * 50 = 10 px
    edge = dict(sample, pred_instances=dict(keypoints=(gt + [[10., 0.], [0., 9.99]])[None]),
                support_keypoints_visible=np.ones((1, 2)))
    metric.results.clear()
    metric.process({}, [edge])
    assert metric.compute_metrics(metric.results)['PCK@0.2'] == 0.5

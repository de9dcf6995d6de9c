"""EpisodicPCKMetric against an independent transcription of the MP-100 reference.

The reference (CapeFormer, PoseAnything, Pose-for-Everything; mmpose 0.x): the dataset
loader cleans each box, ``_report_metric`` calls ``keypoint_pck_accuracy`` once per
(supports, query) pair and averages over pairs. The functions below restate those
definitions in plain numpy; nothing here comes from keypose_ext.
"""
import math

import numpy as np
import pytest
from mmpose.registry import METRICS

THRS = (0.05, 0.1, 0.15, 0.2, 0.25)


# ----------------------------------------------------------------- the reference
def ref_clean_bbox(bbox, width, height):
    """The loader's sanitising of an annotation box [x, y, w, h]."""
    x, y, w, h = bbox
    x1 = max(0, x)
    y1 = max(0, y)
    x2 = min(width - 1, x1 + max(0, w - 1))
    y2 = min(height - 1, y1 + max(0, h - 1))
    return [x1, y1, x2 - x1, y2 - y1]


def ref_keypoint_pck_accuracy(pred, gt, mask, thr, normalize):
    """mmpose 0.x keypoint_pck_accuracy: pred/gt (N, K, 2), mask (N, K), normalize (N, 2).

    Distances are stored as float32, -1 where masked; a sample whose normaliser has a
    0 is fully masked; a normaliser <= 0 is replaced by 1e6. Per keypoint: the share
    of valid distances below thr (-1 if none); the average is over keypoints with a
    valid share, 0 if there is none.
    """
    n, k, _ = pred.shape
    normalize = normalize.astype(np.float64).copy()
    use = mask.copy()
    for i in range(n):
        if (normalize[i] == 0).any():
            use[i, :] = False
    normalize[normalize <= 0] = 1e6
    dist = np.full((k, n), -1, dtype=np.float32)
    for i in range(n):
        for j in range(k):
            if use[i, j]:
                dist[j, i] = np.linalg.norm((pred[i, j] - gt[i, j]) / normalize[i])
    per_kpt = []
    for j in range(k):
        valid = dist[j] != -1
        if valid.sum() > 0:
            per_kpt.append((dist[j][valid] < thr).sum() / valid.sum())
        else:
            per_kpt.append(-1)
    per_kpt = np.array(per_kpt)
    ok = per_kpt[per_kpt >= 0]
    return per_kpt, (ok.mean() if len(ok) > 0 else 0), len(ok)


def ref_report_metric(pairs):
    """_report_metric's PCK part: one keypoint_pck_accuracy call per pair and thr."""
    results = {t: [] for t in THRS}
    for p in pairs:
        mask = p['vis'] > 0
        for s in p['sup_vis']:
            mask = np.bitwise_and(mask, s > 0)
        box = ref_clean_bbox(p['raw_box'], p['width'], p['height'])
        thr_bbox = np.max(np.array(box)[2:])
        normalize = np.array([thr_bbox, thr_bbox])
        for t in THRS:
            # predictions come back from the results JSON as float64, the
            # ground truth is the loader's float32 joints_3d
            _, pck, _ = ref_keypoint_pck_accuracy(p['pred'][None].astype(np.float64),
                                                  p['gt'][None].astype(np.float32), mask[None], t,
                                                  normalize[None])
            results[t].append(pck)
    out, mpck = {}, 0
    for t in THRS:
        out[f'PCK@{t:g}'] = np.mean(results[t])
        mpck += np.mean(results[t])
    out['mPCK'] = mpck / len(THRS)
    return out


# ------------------------------------------------------------------ test data
def _pairs(seed=0, n=60):
    """Random predictions; many boxes cross the image edge; some pairs are empty."""
    rng = np.random.default_rng(seed)
    pairs = []
    for i in range(n):
        width, height = (int(v) for v in rng.integers(80, 300, 2))
        k = int(rng.integers(1, 15))
        shots = int(rng.integers(1, 4))
        x0 = rng.uniform(-40, width - 20)
        y0 = rng.uniform(-40, height - 20)
        w, h = rng.uniform(15, 160, 2)
        gt = np.stack([rng.uniform(x0, x0 + w, k), rng.uniform(y0, y0 + h, k)], -1)
        gt = gt.astype(np.float32)
        pred = (gt + rng.normal(0, 0.12 * max(w, h), (k, 2))).astype(np.float32)
        if i % 7 == 0:
            pred[0] = np.nan  # not decoded (early end token)
        vis = (rng.uniform(size=k) > 0.2).astype(np.float32)
        sup_vis = (rng.uniform(size=(shots, k)) > 0.15).astype(np.float32)
        if i % 9 == 0:
            vis[:] = 0  # no keypoint labelled in the query
        elif i % 11 == 0:
            sup_vis[-1] = 0  # none in the last support
        pairs.append(
            dict(
                gt=gt,
                pred=pred,
                vis=vis,
                sup_vis=sup_vis,
                width=width,
                height=height,
                raw_box=[x0, y0, w, h]))
    return pairs


def _samples(pairs, raw_ann_info=True):
    out = []
    for i, p in enumerate(pairs):
        x, y, w, h = p['raw_box']
        s = dict(
            gt_instances=dict(
                keypoints=p['gt'][None],
                keypoints_visible=p['vis'][None],
                bboxes=np.array([[x, y, x + w, y + h]])),
            pred_instances=dict(keypoints=p['pred'][None]),
            support_keypoints_visible=p['sup_vis'],
            ori_shape=(p['height'], p['width']),
            category_id=i % 3,
            category_name=f'c{i % 3}')
        if raw_ann_info:
            s['raw_ann_info'] = dict(bbox=list(p['raw_box']))
        out.append(s)
    return out


def _run(pairs, **cfg):
    metric = METRICS.build(dict(type='EpisodicPCKMetric', **cfg))
    metric.process({}, _samples(pairs))
    return metric.compute_metrics(metric.results)


# ---------------------------------------------------------------------- tests
def test_matches_the_reference_evaluation_to_1e9():
    pairs = _pairs()
    crossing = sum(
        p['raw_box'][0] < 0 or p['raw_box'][1] < 0 or p['raw_box'][0] +
        p['raw_box'][2] > p['width'] - 1 or p['raw_box'][1] + p['raw_box'][3] > p['height'] - 1
        for p in pairs)
    empty = sum(not ((p['vis'] > 0) & (p['sup_vis'] > 0).all(0)).any() for p in pairs)
    assert crossing >= 15 and empty >= 5
    ref = ref_report_metric(pairs)
    res = _run(pairs, per_category=True)
    for key in [f'PCK@{t:g}' for t in THRS] + ['mPCK']:
        assert abs(res[key] - ref[key]) < 1e-9, (key, res[key], ref[key])
    assert 0.2 < res['PCK@0.2'] < 0.9  # neither all in nor all out
    # the box cleaning and the empty pairs matter on these boxes
    old = _run(pairs, protocol='raw_box')
    assert abs(old['PCK@0.2'] - res['PCK@0.2']) > 0.01


def test_several_seeds_and_the_gt_box_fallback():
    for seed in (1, 2, 3):
        pairs = _pairs(seed, n=40)
        ref = ref_report_metric(pairs)
        res = _run(pairs)
        assert abs(res['mPCK'] - ref['mPCK']) < 1e-9
    # without raw_ann_info the xyxy gt box gives the same annotated box
    metric = METRICS.build(dict(type='EpisodicPCKMetric'))
    metric.process({}, _samples(pairs, raw_ann_info=False))
    res = metric.compute_metrics(metric.results)
    assert abs(res['mPCK'] - ref['mPCK']) < 1e-6


def _pair(pred, vis=(1., 1.), sup=((1., 1.), ), box=(0., 0., 51., 41.), size=(200, 100)):
    gt = np.array([[10., 10.], [20., 20.]], np.float32)
    x, y, w, h = box
    return dict(
        gt_instances=dict(
            keypoints=gt[None],
            keypoints_visible=np.array([vis]),
            bboxes=np.array([[x, y, x + w, y + h]])),
        pred_instances=dict(keypoints=np.asarray(pred, np.float32)[None]),
        support_keypoints_visible=np.array(sup),
        ori_shape=(size[1], size[0]),
        raw_ann_info=dict(bbox=list(box)))


def test_a_pair_with_no_visible_query_keypoint_scores_zero():
    perfect = _pair([[10., 10.], [20., 20.]])
    no_query = _pair([[10., 10.], [20., 20.]], vis=(0., 0.))
    metric = METRICS.build(dict(type='EpisodicPCKMetric'))
    metric.process({}, [perfect, no_query])
    res = metric.compute_metrics(metric.results)
    assert res['PCK@0.2'] == 0.5 and res['mPCK'] == 0.5  # (1 + 0) / 2 pairs
    # the former rule left it out
    old = METRICS.build(dict(type='EpisodicPCKMetric', protocol='raw_box'))
    old.process({}, [perfect, no_query])
    assert old.compute_metrics(old.results)['PCK@0.2'] == 1.0


def test_support_visibility_strict_threshold_and_cleaned_box():
    far = [[10., 10.], [90., 90.]]  # keypoint 1 is far off
    # keypoint 1 unlabelled in the second support: not counted
    sample = _pair(far, sup=((1., 1.), (1., 0.)))
    metric = METRICS.build(dict(type='EpisodicPCKMetric'))
    metric.process({}, [sample])
    res = metric.compute_metrics(metric.results)
    assert res['PCK@0.2'] == 1.0 and res['EPE'] == 0.0
    assert set(res) == {
        'PCK@0.05', 'PCK@0.1', 'PCK@0.15', 'PCK@0.2', 'PCK@0.25', 'mPCK', 'EPE', 'Missing'
    }
    # annotated w = 51 -> cleaned 50, so 0.2 * 50 = 10 px, and the test is strict
    for dx, expected in ((10.0, 0.5), (9.99, 1.0)):
        metric.results.clear()
        metric.process({}, [_pair([[10. + dx, 10.], [20., 20.]])])
        assert metric.compute_metrics(metric.results)['PCK@0.2'] == expected, dx
    # a box crossing the right edge of a 40 px wide image: x2 = 39, w = 39 - 10
    metric.results.clear()
    metric.process({},
                   [_pair([[10. + 5.9, 10.], [20., 20.]], box=(10., 0., 60., 10.), size=(40, 100))])
    assert metric.compute_metrics(metric.results)['PCK@0.2'] == 0.5  # 5.9 > 0.2 * 29


def test_nan_prediction_is_a_miss_and_bad_protocol():
    metric = METRICS.build(dict(type='EpisodicPCKMetric'))
    metric.process({}, [_pair([[math.nan, math.nan], [20., 20.]])])
    res = metric.compute_metrics(metric.results)
    assert res['PCK@0.2'] == 0.5 and res['Missing'] == 0.5
    with pytest.raises(ValueError, match='protocol'):
        METRICS.build(dict(type='EpisodicPCKMetric', protocol='coco'))

"""PCK of one CAPE (supports, query) pair as the MP-100 reference evaluation computes it.

The reference is the evaluation that CapeFormer, PoseAnything and Pose-for-Everything
share (all on mmpose 0.x):

- The query box is cleaned when the annotation file is read
  (``_load_coco_keypoint_annotation_kernel`` of
  ``capeformer/datasets/datasets/mp100/test_dataset.py``; the same code in
  Pose-for-Everything's and PoseAnything's MP-100 datasets)::

      x1 = max(0, x);  y1 = max(0, y)
      x2 = min(width - 1, x1 + max(0, w - 1));  y2 = min(height - 1, y1 + max(0, h - 1))
      bbox = [x1, y1, x2 - x1, y2 - y1]

  with ``[x, y, w, h]`` the annotation's ``bbox`` and ``width``/``height`` the image's.
  Instances with ``x2 <= x1`` or ``y2 <= y1`` (or ``area <= 0``) are dropped there.
- ``_report_metric`` of ``test_base_dataset.py`` (CapeFormer, PoseAnything; Pose-for-
  Everything's ``fewshot_base_dataset.py`` for PCK@0.2 only), per pair: the mask is
  "labelled (v > 0) in the query and in every support"; the normaliser is
  ``bbox_thr = np.max(bbox[2:])`` of the cleaned query box, given per axis as
  ``np.array([bbox_thr, bbox_thr])``; then mmpose 0.x's ``keypoint_pck_accuracy`` (``mmpose/
  core/evaluation/top_down_eval.py``) on that single pair: ``_calc_distances`` stores
  ``norm((pred - gt) / normalize)`` in a float32 array (-1 where masked; all masked if a
  normaliser is 0; a normaliser <= 0 becomes 1e6), ``_distance_acc`` counts
  ``distance < thr`` (in float32) over the unmasked keypoints, and the pair's PCK is
  their mean, **0 when no keypoint is unmasked**. PCK@t is the mean over all pairs,
  mPCK the mean over t in (0.05, 0.1, 0.15, 0.2, 0.25).

``EpisodicPCKMetric`` and ``CapeVisualizer`` both call :func:`mp100_sample_pck`.
"""
from typing import Sequence, Tuple

import numpy as np

from ...utils.errors import UserValueError

MP100_THRESHOLDS = (0.05, 0.1, 0.15, 0.2, 0.25)
PROTOCOLS = ('mp100', 'raw_box')


def mp100_clean_bbox(bbox_xywh: Sequence[float],
                     img_size: Sequence[float]) -> Tuple[np.ndarray, bool]:
    """The query box the reference normalises by.

    Args:
        bbox_xywh: ``[x, y, w, h]`` as in the annotation file.
        img_size: Image ``(width, height)``.

    Returns:
        tuple: the cleaned box ``[x1, y1, w', h']`` (float64) and whether the
        reference would keep the instance (``x2 > x1`` and ``y2 > y1``).
    """
    x, y, w, h = (float(v) for v in bbox_xywh)
    width, height = (float(v) for v in img_size)
    x1, y1 = max(0.0, x), max(0.0, y)
    x2 = min(width - 1, x1 + max(0.0, w - 1))
    y2 = min(height - 1, y1 + max(0.0, h - 1))
    return np.array([x1, y1, x2 - x1, y2 - y1], np.float64), bool(x2 > x1 and y2 > y1)


def pair_keypoint_distances(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray,
                            normalize: np.ndarray) -> np.ndarray:
    """Normalised distances of one pair, (K,) float32; -1 where not counted.

    ``_calc_distances`` of mmpose 0.x for N = 1: ``normalize`` (2,) per axis. NaN
    predictions (keypoints the model did not decode) give NaN: counted, never a hit.
    """
    pred = np.asarray(pred, np.float64).reshape(-1, 2)
    gt = np.asarray(gt, np.float64).reshape(-1, 2)
    mask = np.asarray(mask, bool).reshape(-1).copy()
    normalize = np.asarray(normalize, np.float64).reshape(2).copy()
    if (normalize == 0).any():
        mask[:] = False
    normalize[normalize <= 0] = 1e6
    dist = np.full(len(mask), -1, np.float32)
    if mask.any():
        dist[mask] = np.linalg.norm(((pred - gt) / normalize)[mask], axis=-1)
    return dist


def mp100_pair_pck(pred: np.ndarray,
                   gt: np.ndarray,
                   query_visible: np.ndarray,
                   support_visible: np.ndarray,
                   bbox_xywh: Sequence[float],
                   img_size: Sequence[float],
                   thresholds: Sequence[float] = MP100_THRESHOLDS,
                   protocol: str = 'mp100') -> Tuple[np.ndarray, int]:
    """PCK of one (supports, query) pair at each threshold.

    Args:
        pred (np.ndarray): (K, 2) predicted query keypoints, image pixels (NaN
            where not decoded).
        gt (np.ndarray): (K, 2) query ground truth, image pixels.
        query_visible (np.ndarray): (K,) query visibility (> 0: labelled).
        support_visible (np.ndarray): (N, K) visibility in each support.
        bbox_xywh: The query box ``[x, y, w, h]`` as annotated.
        img_size: The query image ``(width, height)``.
        thresholds: PCK thresholds (fractions of the box size).
        protocol (str): ``'mp100'``: the reference (module docstring).
            ``'raw_box'``: this project's former rule, normalised by max(w, h) of
            the box as annotated; the caller skips pairs with no counted keypoint.

    Returns:
        tuple: PCK per threshold (T,) float64 and the number of counted keypoints
        (an empty pair scores 0 at every threshold).
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f'mp100_pair_pck: protocol must be one of {PROTOCOLS}, '
                         f'got {protocol!r}')
    mask = np.asarray(query_visible).reshape(-1) > 0
    support_visible = np.asarray(support_visible).reshape(-1, len(mask))
    for s in support_visible:
        mask &= s > 0
    if protocol == 'mp100':
        box, _ = mp100_clean_bbox(bbox_xywh, img_size)
    else:
        box = np.asarray(bbox_xywh, np.float64)
    bbox_thr = np.max(box[2:])
    dist = pair_keypoint_distances(pred, gt, mask, np.array([bbox_thr, bbox_thr]))
    valid = dist != -1
    count = int(valid.sum())
    if count == 0:
        return np.zeros(len(thresholds)), 0
    d = dist[valid]
    return np.array([np.mean(d < np.float32(t)) for t in thresholds]), count


def query_box_and_image_size(ds: dict) -> Tuple[np.ndarray, Tuple[float, float]]:
    """The query's annotated box ``[x, y, w, h]`` and image ``(width, height)``.

    ``ds`` is a data sample as a dict (``PoseDataSample.to_dict()``, what metrics
    receive). The box is ``raw_ann_info['bbox']`` (the annotation file's, kept by
    MMPose's COCO parsing and ``PackCapeInputs``) or, without it,
    ``gt_instances.bboxes`` (x1, y1, x2, y2). The image size is ``ori_shape``
    (LoadImage's; the annotation file's width/height for MP-100).
    """
    raw = ds.get('raw_ann_info') or {}
    if raw.get('bbox') is not None:
        box = np.asarray(raw['bbox'], np.float64).reshape(4)
    else:
        x1, y1, x2, y2 = np.asarray(ds['gt_instances']['bboxes'], np.float64).reshape(-1)[:4]
        box = np.array([x1, y1, x2 - x1, y2 - y1])
    if ds.get('ori_shape') is None:
        raise UserValueError(
            'MP-100 PCK: the data sample has no `ori_shape` (the query image size that '
            'the box cleaning needs); put LoadImage in the pipeline and keep '
            "'ori_shape' in PackCapeInputs.meta_keys")
    h, w = ds['ori_shape'][:2]
    return box, (float(w), float(h))


def mp100_sample_pck(ds: dict,
                     thresholds: Sequence[float] = MP100_THRESHOLDS,
                     protocol: str = 'mp100') -> Tuple[np.ndarray, int]:
    """:func:`mp100_pair_pck` of the pair in one data sample (a dict).

    Reads ``gt_instances`` (``keypoints`` (1, K, 2), ``keypoints_visible`` (1, K)),
    ``pred_instances.keypoints`` (1, K, 2), ``support_keypoints_visible`` (N, K) and
    the box/image size of :func:`query_box_and_image_size`.
    """
    gt, pred = ds['gt_instances'], ds['pred_instances']
    gt_xy = np.asarray(gt['keypoints'], np.float64)[0]
    pred_xy = np.asarray(pred['keypoints'], np.float64)[0]
    if pred_xy.shape != gt_xy.shape:
        raise ValueError(f'MP-100 PCK: prediction {pred_xy.shape} and ground truth '
                         f'{gt_xy.shape} differ for {ds.get("img_path")}')
    box, img_size = query_box_and_image_size(ds)
    return mp100_pair_pck(pred_xy, gt_xy,
                          np.asarray(gt['keypoints_visible'])[0],
                          np.asarray(ds['support_keypoints_visible']), box, img_size, thresholds,
                          protocol)

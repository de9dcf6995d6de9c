"""PCK of CAPE episodes, exactly as the MP-100 reference evaluation computes it."""
from collections import defaultdict
from typing import Dict, Optional, Sequence

import numpy as np
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log
from mmpose.registry import METRICS

from ...utils.errors import UserValueError
from ..functional.mp100_pck import (MP100_THRESHOLDS, PROTOCOLS, mp100_clean_bbox, mp100_sample_pck,
                                    query_box_and_image_size)


@METRICS.register_module()
class EpisodicPCKMetric(BaseMetric):
    """PCK@t and mPCK over (supports, query) pairs, as the MP-100 reference.

    Default (``protocol='mp100'``), the evaluation of CapeFormer, PoseAnything and
    Pose-for-Everything (see :mod:`keypose_ext.evaluation.functional.mp100_pck` for
    the source files): per pair, the keypoints labelled in the query and in every
    support count; a keypoint is correct when ``||pred - gt|| / s < t`` (float32)
    with ``s = max(w, h)`` of the query box **cleaned** as the reference loader does
    (clipped to the image, ``w - 1``/``h - 1``); the pair's PCK is correct/counted,
    **0 for a pair with no counted keypoint**; PCK@t is the mean over all pairs and
    mPCK the mean over the thresholds. Distances are in the query's original image
    pixels. A keypoint the model did not decode (NaN) counts as wrong.

    ``protocol='raw_box'`` is this project's earlier rule: the box as annotated,
    pairs with no counted keypoint left out. Not comparable with the literature.

    Keys: ``PCK@0.05`` ... ``PCK@0.25`` (fractions), ``mPCK``; also ``EPE`` (mean
    pixel error over counted, decoded keypoints; not the reference's per-pair EPE)
    and ``Missing`` (fraction of counted keypoints not decoded).

    Each data sample needs ``gt_instances`` (``keypoints`` (1, K, 2),
    ``keypoints_visible`` (1, K), ``bboxes`` (1, 4)), ``pred_instances.keypoints``
    (1, K, 2), ``support_keypoints_visible`` (N, K), ``ori_shape`` and, for the
    annotated box, ``raw_ann_info`` (else the gt box is used), as ``PackCapeInputs``
    provides.

    Args:
        thresholds (Sequence[float]): PCK thresholds.
        protocol (str): ``'mp100'`` (default) or ``'raw_box'``.
        per_category (bool): Also log PCK@0.2 per category (``PCK@0.2/<name>``).
        collect_device (str): As in ``BaseMetric``.
        prefix (str, optional): Key prefix; none by default so logs read
            ``PCK@0.2: ...``.
    """

    # '' (not None): keys stay unprefixed ('PCK@0.2') without mmengine's warning
    default_prefix: Optional[str] = ''

    def __init__(self,
                 thresholds: Sequence[float] = MP100_THRESHOLDS,
                 protocol: str = 'mp100',
                 per_category: bool = False,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None):
        super().__init__(collect_device=collect_device, prefix=prefix)
        if protocol not in PROTOCOLS:
            raise UserValueError(f'EpisodicPCKMetric: protocol must be one of {PROTOCOLS}, '
                                 f'got {protocol!r}')
        self.thresholds = tuple(float(t) for t in thresholds)
        self.protocol = protocol
        self.per_category = per_category

    @staticmethod
    def _key(t: float) -> str:
        return f'PCK@{t:g}'

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for ds in data_samples:
            pck, count = mp100_sample_pck(ds, self.thresholds, self.protocol)
            gt = ds['gt_instances']
            gt_xy = np.asarray(gt['keypoints'], np.float64)[0]
            pred_xy = np.asarray(ds['pred_instances']['keypoints'], np.float64)[0]
            counted = (np.asarray(gt['keypoints_visible'])[0] > 0) & (np.asarray(
                ds['support_keypoints_visible']) > 0).all(0)
            box, img_size = query_box_and_image_size(ds)
            self.results.append(
                dict(
                    category=ds.get('category_name', ds.get('category_id')),
                    pck=pck,
                    count=count,
                    dist=np.linalg.norm(pred_xy - gt_xy, axis=-1)[counted],
                    kept=mp100_clean_bbox(box, img_size)[1]))

    def compute_metrics(self, results: list) -> Dict[str, float]:
        empty = sum(r['count'] == 0 for r in results)
        if self.protocol == 'mp100':
            pairs = results
            if empty:
                print_log(
                    f'EpisodicPCKMetric: {empty} of {len(results)} pairs have no '
                    'keypoint labelled in the query and every support; they score 0 '
                    '(MP-100 reference)',
                    logger='current')
            dropped = sum(not r['kept'] for r in results)
            if dropped:
                print_log(
                    f'EpisodicPCKMetric: {dropped} pairs have a query box the MP-100 '
                    'loader would have dropped (empty after cleaning)',
                    logger='current')
        else:
            pairs = [r for r in results if r['count']]
            if empty:
                print_log(
                    f'EpisodicPCKMetric: {empty} of {len(results)} pairs have no '
                    'counted keypoint; left out (protocol raw_box)',
                    logger='current')
        if not pairs:
            return {self._key(t): 0.0 for t in self.thresholds}
        table = np.stack([r['pck'] for r in pairs])  # (pairs, thresholds)
        metrics, total = {}, 0.0
        for i, t in enumerate(self.thresholds):
            metrics[self._key(t)] = float(np.mean(table[:, i]))
            total += np.mean(table[:, i])
        metrics['mPCK'] = float(total / len(self.thresholds))
        all_d = np.concatenate([r['dist'] for r in pairs])
        finite = np.isfinite(all_d)
        metrics['EPE'] = float(all_d[finite].mean()) if finite.any() else float('nan')
        metrics['Missing'] = float(1 - finite.mean()) if len(all_d) else 0.0
        if self.per_category and 0.2 in self.thresholds:
            col = self.thresholds.index(0.2)
            by_cat = defaultdict(list)
            for r in pairs:
                by_cat[r['category']].append(r['pck'][col])
            for cat, v in sorted(by_cat.items(), key=lambda kv: str(kv[0])):
                metrics[f'PCK@0.2/{cat}'] = float(np.mean(v))
        return metrics

"""PCK of CAPE episodes, following the MP-100 protocol."""
from collections import defaultdict
from typing import Dict, Optional, Sequence

import numpy as np
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log
from mmpose.registry import METRICS


@METRICS.register_module()
class EpisodicPCKMetric(BaseMetric):
    """PCK@t, mPCK and EPE over (supports, query) pairs, as MP-100 defines them.

    For one pair, a keypoint counts if it is labelled in the query **and** in
    every support. It is correct when its distance to the ground truth, in the
    query's original image pixels, is below ``t * max(w, h)`` of the query's
    bounding box. PCK of the pair = correct / counted; the reported PCK is the
    mean over pairs that count at least one keypoint. A keypoint the model did
    not decode (NaN, after an early end token) counts as wrong.

    Keys: ``PCK@0.05`` ... ``PCK@0.25`` (fractions in [0, 1]), ``mPCK`` (their
    mean), ``EPE`` (mean pixel error over counted and decoded keypoints), and
    ``Missing`` (fraction of counted keypoints not decoded).

    Args:
        thresholds (Sequence[float]): PCK thresholds.
        per_category (bool): Also log PCK@0.2 per category (as
            ``PCK@0.2/<name>`` keys).
        collect_device (str): As in ``BaseMetric``.
        prefix (str, optional): Key prefix; none by default so logs read
            ``PCK@0.2: ...``.
    """

    # '' (not None): keys stay unprefixed ('PCK@0.2') without mmengine's warning
    default_prefix: Optional[str] = ''

    def __init__(self,
                 thresholds: Sequence[float] = (0.05, 0.10, 0.15, 0.20, 0.25),
                 per_category: bool = False,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None):
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.thresholds = tuple(float(t) for t in thresholds)
        self.per_category = per_category

    @staticmethod
    def _key(t: float) -> str:
        return f'PCK@{t:g}'

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for ds in data_samples:
            gt, pred = ds['gt_instances'], ds['pred_instances']
            gt_xy = np.asarray(gt['keypoints'], np.float64)[0]
            pred_xy = np.asarray(pred['keypoints'], np.float64)[0]
            if pred_xy.shape != gt_xy.shape:
                raise ValueError(f'EpisodicPCKMetric: prediction {pred_xy.shape} and '
                                 f'ground truth {gt_xy.shape} differ for '
                                 f'{ds.get("img_path")}')
            counted = np.asarray(gt['keypoints_visible'])[0] > 0
            counted &= (np.asarray(ds['support_keypoints_visible']) > 0).all(0)
            x1, y1, x2, y2 = np.asarray(gt['bboxes'], np.float64)[0]
            dist = np.linalg.norm(pred_xy - gt_xy, axis=-1)[counted]
            self.results.append(dict(
                category=ds.get('category_name', ds.get('category_id')),
                dist=dist, norm=max(x2 - x1, y2 - y1)))

    def compute_metrics(self, results: list) -> Dict[str, float]:
        pairs = [r for r in results if len(r['dist'])]
        if len(pairs) < len(results):
            print_log(f'EpisodicPCKMetric: {len(results) - len(pairs)} of '
                      f'{len(results)} pairs have no keypoint labelled in the query and '
                      'all supports; they are not counted', logger='current')
        if not pairs:
            return {self._key(t): 0.0 for t in self.thresholds}
        metrics = {}
        for t in self.thresholds:
            # NaN (not decoded) compares False: a miss, never a hit
            metrics[self._key(t)] = float(np.mean(
                [np.mean(r['dist'] < t * r['norm']) for r in pairs]))
        metrics['mPCK'] = float(np.mean([metrics[self._key(t)]
                                         for t in self.thresholds]))
        all_d = np.concatenate([r['dist'] for r in pairs])
        finite = np.isfinite(all_d)
        metrics['EPE'] = float(all_d[finite].mean()) if finite.any() else float('nan')
        metrics['Missing'] = float(1 - finite.mean())
        if self.per_category:
            by_cat = defaultdict(list)
            for r in pairs:
                by_cat[r['category']].append(np.mean(r['dist'] < 0.2 * r['norm']))
            for cat, v in sorted(by_cat.items(), key=lambda kv: str(kv[0])):
                metrics[f'PCK@0.2/{cat}'] = float(np.mean(v))
        return metrics

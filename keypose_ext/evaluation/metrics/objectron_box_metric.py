"""Objectron's 3D box evaluation of (x, y, depth) keypoint predictions."""
import json
import os.path as osp
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence

import numpy as np
from mmengine.evaluator import BaseMetric
from mmengine.logging import MMLogger
from mmpose.registry import METRICS

from keypose_ext.objectron.box3d import lift_keypoints
from keypose_ext.objectron.box_evaluation import (average_precision, is_evaluated,
                                                  projection_error_2d, viewpoint_errors)
from keypose_ext.objectron.iou3d import box_iou_3d
from keypose_ext.utils.arrays import as_float64 as _np
from keypose_ext.utils.errors import UserValueError
from keypose_ext.utils.io import atomic_write


@METRICS.register_module()
class ObjectronBoxMetric(BaseMetric):
    """Objectron's evaluation of 3D boxes lifted from keypoints with depth.

    Per instance, the predicted keypoints (original-frame pixels) and depths
    are lifted with the frame's intrinsics into camera coordinates
    (:func:`~keypose_ext.objectron.box3d.lift_keypoints`); the true box is
    ``gt_instances.keypoints_3d`` (or, without it, the true keypoints lifted
    the same way). Only boxes Objectron evaluates count (visibility > 0.1,
    centre inside the frame, in front of the camera); for them, as Objectron's
    ``eval.py`` defines each:

    - ``iou_3d``: mean exact 3D IoU (:func:`~keypose_ext.objectron.iou3d.box_iou_3d`);
    - ``AP@<t>``: average precision at 3D IoU ``t`` (default 0.5), hits
      accumulated in dataset order as Objectron does;
    - ``error_2d``: mean 2D projection error of the 8 corners, normalised
      image coordinates;
    - ``azimuth_error`` / ``elevation_error``: mean viewpoint errors, degrees;
    - ``num_boxes``: boxes evaluated (``num_skipped``: left out by the filter);
    - ``video_iou_3d`` / ``video_error_2d``: means over videos of the
      per-video means (each video weighs the same), and ``video_AP@<t>``.

    The top-down model predicts one box per annotated instance, so Objectron's
    matching of a prediction to its nearest annotation is that pairing.

    Reads per data sample: ``pred_instances.keypoints`` (N, 9, 2),
    ``pred_instances.keypoints_depth`` (N, 9), ``gt_instances.keypoints``
    (N, 9, 2), ``gt_instances.keypoints_depth`` (N, 9), optional
    ``gt_instances.keypoints_3d`` (N, 9, 3), and the metainfo
    ``camera_intrinsics`` (3, 3), ``ori_shape``, optional ``video_id``,
    ``frame_index`` and ``objectron_visibility`` (default 1), packed by
    ``PackDepthPoseInputs(meta_keys=...)`` from ``ObjectronMultiVideoDataset``.

    Args:
        iou_thresholds (sequence[float]): Thresholds of ``AP@t``.
        depth_type (str): How predicted depths are lifted, ``'z'`` or
            ``'range'`` (see ``lift_keypoints``).
        out_file (str, optional): Write per-video and per-frame results to
            this JSON file (relative paths are under the work dir's cwd).
        collect_device (str): See :class:`mmengine.evaluator.BaseMetric`.
        prefix (str, optional): Defaults to ``'objectron'``.
    """

    default_prefix: Optional[str] = 'objectron'

    def __init__(self,
                 iou_thresholds: Sequence[float] = (0.5, ),
                 depth_type: str = 'z',
                 out_file: Optional[str] = None,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        thresholds = [float(t) for t in iou_thresholds]
        if not thresholds or not all(0 <= t <= 1 for t in thresholds):
            raise UserValueError('ObjectronBoxMetric: iou_thresholds must be numbers in '
                                 f'[0, 1], got {iou_thresholds!r}.')
        if depth_type not in ('z', 'range'):
            raise UserValueError("ObjectronBoxMetric: depth_type must be 'z' or 'range', got "
                                 f'{depth_type!r}.')
        self.iou_thresholds = thresholds
        self.depth_type = depth_type
        self.out_file = out_file

    @staticmethod
    def _get(sample: dict, group: str, key: str, required: bool = True):
        inst = sample.get(group)
        if inst is None or key not in inst:
            if not required:
                return None
            raise UserValueError(
                f"ObjectronBoxMetric: data sample {sample.get('img_path', '?')} has no "
                f'`{group}.{key}`; the head must predict keypoints and keypoints_depth '
                '(DepthKeypointRegressionHead) and PackDepthPoseInputs packs the truth.')
        return _np(inst[key])

    def process(self, data_batch: Optional[dict], data_samples: Sequence[dict]) -> None:
        """Lift, filter and score every instance of a batch of data samples."""
        for sample in data_samples:
            if 'camera_intrinsics' not in sample or 'ori_shape' not in sample:
                raise UserValueError(
                    f"ObjectronBoxMetric: data sample {sample.get('img_path', '?')} has no "
                    '`camera_intrinsics`/`ori_shape`; use ObjectronMultiVideoDataset and add '
                    "'camera_intrinsics' to PackDepthPoseInputs(meta_keys=...).")
            k = _np(sample['camera_intrinsics']).reshape(3, 3)
            height, width = sample['ori_shape'][:2]
            wh = np.array([width, height], np.float64)
            pred = self._get(sample, 'pred_instances', 'keypoints')[..., :2]
            pred_depth = self._get(sample, 'pred_instances', 'keypoints_depth')
            gt = self._get(sample, 'gt_instances', 'keypoints')[..., :2]
            gt_depth = self._get(sample, 'gt_instances', 'keypoints_depth')
            gt_3d = self._get(sample, 'gt_instances', 'keypoints_3d', required=False)
            if pred.shape != gt.shape or pred.shape[1:] != (9, 2):
                raise UserValueError(f'ObjectronBoxMetric: predicted keypoints {pred.shape} '
                                     f'and true keypoints {gt.shape} must both be (N, 9, 2).')
            pred_3d = lift_keypoints(pred, pred_depth.reshape(pred.shape[:2]), k, self.depth_type)
            if gt_3d is None:
                gt_3d = lift_keypoints(gt, gt_depth.reshape(gt.shape[:2]), k)
            gt_3d = gt_3d.reshape(-1, 9, 3)
            visibility = float(sample.get('objectron_visibility', 1.0))
            frame_index = sample.get('frame_index')
            for i in range(len(gt)):
                row = dict(
                    video_id=str(sample.get('video_id', '')),
                    frame_index=-1 if frame_index is None else int(frame_index),
                    evaluated=is_evaluated(visibility, gt[i, 0] / wh, gt_3d[i, 0, 2]))
                if row['evaluated']:
                    row['iou_3d'] = box_iou_3d(pred_3d[i], gt_3d[i])
                    row['error_2d'] = projection_error_2d(pred[i] / wh, gt[i] / wh)
                    row['azimuth_error'], row['elevation_error'] = viewpoint_errors(
                        pred_3d[i], gt_3d[i])
                self.results.append(row)

    def _summary(self, rows: List[dict]) -> Dict[str, float]:
        """Means and APs of evaluated rows (NaN when there are none)."""
        ious = np.array([r['iou_3d'] for r in rows])
        out = {}
        for key in ('iou_3d', 'error_2d', 'azimuth_error', 'elevation_error'):
            out[key] = float(np.mean([r[key] for r in rows])) if rows else float('nan')
        for t in self.iou_thresholds:
            out[f'AP@{t:g}'] = average_precision(ious >= t, ious < t, len(rows)) \
                if rows else float('nan')
        return out

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        """Pool the per-instance rows into Objectron's metrics and per-video ones."""
        logger = MMLogger.get_current_instance()
        evaluated = [r for r in results if r['evaluated']]
        metrics = self._summary(evaluated)
        metrics['num_boxes'] = len(evaluated)
        metrics['num_skipped'] = len(results) - len(evaluated)
        if not evaluated:
            logger.warning('ObjectronBoxMetric: no box passes Objectron\'s filter '
                           '(visibility > 0.1, centre inside, in front); metrics are NaN.')
        videos = OrderedDict()
        for r in evaluated:
            videos.setdefault(r['video_id'], []).append(r)
        per_video = {
            v: dict(self._summary(rows), num_boxes=len(rows))
            for v, rows in videos.items()
        }
        for key in ['iou_3d', 'error_2d'] + [f'AP@{t:g}' for t in self.iou_thresholds]:
            values = [m[key] for m in per_video.values()]
            metrics[f'video_{key}'] = float(np.mean(values)) if values else float('nan')
        if per_video:
            lines = [
                f'{"video":<32} {"boxes":>5} {"IoU3D":>6} {"2D err":>7} '
                f'{"AP@" + format(self.iou_thresholds[0], "g"):>7}'
            ]
            for v, m in per_video.items():
                lines.append(f'{v[:32]:<32} {m["num_boxes"]:>5} {m["iou_3d"]:>6.3f} '
                             f'{m["error_2d"]:>7.4f} '
                             f'{m["AP@" + format(self.iou_thresholds[0], "g")]:>7.3f}')
            logger.info('ObjectronBoxMetric per video:\n' + '\n'.join(lines))
        if self.out_file:
            with atomic_write(osp.abspath(self.out_file), 'w') as f:
                json.dump(dict(metrics=metrics, videos=per_video, boxes=results), f, indent=1)
        return metrics

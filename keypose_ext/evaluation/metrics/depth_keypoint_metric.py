"""2D, depth and Objectron-style errors of (x, y, depth) keypoints."""
from typing import Dict, List, Optional, Sequence

import numpy as np
from mmengine.evaluator import BaseMetric
from mmengine.logging import MMLogger
from mmpose.registry import METRICS

from keypose_ext.objectron.box_evaluation import is_evaluated
from keypose_ext.utils.arrays import as_float64 as _np
from keypose_ext.utils.errors import UserValueError


@METRICS.register_module()
class DepthKeypointMetric(BaseMetric):
    """Errors of keypoints with depth, e.g. a bottle's 3D-box keypoints.

    Reads, per data sample (all in original-image pixels):

    - ``pred_instances.keypoints`` (N, K, 2) and ``pred_instances
      .keypoints_depth`` (N, K) metres;
    - ``gt_instances.keypoints`` (N, K, 2), ``gt_instances.keypoints_depth``
      (N, K) metres, ``gt_instances.keypoints_visible`` (N, K) and, for
      ``pck_normalize='bbox'``, ``gt_instances.bboxes`` (N, 4) xyxy;
    - ``ori_shape`` (H, W) of the frame.

    Metrics (keys prefixed, default ``'bottle/'``):

    - ``mean_px_error``: mean 2D Euclidean error in pixels, pooled over all
      visible keypoints of all instances.
    - ``PCK``: fraction of visible keypoints whose 2D error is at most
      ``pck_thr × norm``; ``norm`` is ``max(frame W, frame H)`` for
      ``pck_normalize='frame'`` (default), or ``max(bbox w, bbox h)`` of the
      ground-truth box for ``'bbox'``.
    - ``mean_depth_error``: mean absolute depth error in metres, pooled over
      visible keypoints.
    - ``objectron_2d_error``: Objectron's 2D metric — for each instance the
      mean L2 distance of corners 1..8 in normalised image coordinates
      ``(x / W, y / H)``, averaged over the instances Objectron evaluates:
      visibility > 0.1 (the sample's ``objectron_visibility``, 1 when
      absent), true centre strictly inside the frame, and in front of the
      camera (true centre z > 0: ``keypoints_3d`` when packed, else the
      depth). As in Objectron all eight corners count regardless of their
      own visibility, and ``K == 9`` with keypoint 0 the centre. NaN (with a
      warning) when no instance qualifies.

    Args:
        pck_thr (float): PCK threshold as a fraction of the normaliser.
        pck_normalize (str): ``'frame'`` or ``'bbox'``.
        collect_device (str): See :class:`mmengine.evaluator.BaseMetric`.
        prefix (str, optional): Defaults to ``'bottle'``.
    """

    default_prefix: Optional[str] = 'bottle'

    def __init__(self,
                 pck_thr: float = 0.05,
                 pck_normalize: str = 'frame',
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        if not (0 < pck_thr):
            raise UserValueError('DepthKeypointMetric: `pck_thr` must be > 0, got '
                                 f'{pck_thr!r}.')
        if pck_normalize not in ('frame', 'bbox'):
            raise UserValueError('DepthKeypointMetric: `pck_normalize` must be '
                                 f"'frame' or 'bbox', got {pck_normalize!r}.")
        self.pck_thr = float(pck_thr)
        self.pck_normalize = pck_normalize

    @staticmethod
    def _field(sample: dict, group: str, key: str) -> np.ndarray:
        inst = sample.get(group)
        if inst is None or key not in inst:
            hint = ('the head must output it (DepthKeypointRegressionHead '
                    'does)' if group == 'pred_instances' else
                    'the packing transform must put it in gt_instances '
                    '(PackDepthPoseInputs does)')
            raise UserValueError(f'DepthKeypointMetric: data sample '
                                 f"{sample.get('img_path', sample.get('id', '?'))} has no "
                                 f'`{group}.{key}`; {hint}.')
        return _np(inst[key])

    def process(self, data_batch: Optional[dict], data_samples: Sequence[dict]) -> None:
        """Store per-keypoint errors of one batch of (dict) data samples."""
        for sample in data_samples:
            pred_kpts = self._field(sample, 'pred_instances', 'keypoints')
            pred_depth = self._field(sample, 'pred_instances', 'keypoints_depth')
            gt_kpts = self._field(sample, 'gt_instances', 'keypoints')
            gt_depth = self._field(sample, 'gt_instances', 'keypoints_depth')
            visible = self._field(sample, 'gt_instances', 'keypoints_visible')
            if visible.ndim == 3:  # (N, K, 2) visibility + weight variant
                visible = visible[..., 0]
            pred_kpts, gt_kpts = pred_kpts[..., :2], gt_kpts[..., :2]
            n, k = gt_kpts.shape[:2]
            for name, arr, shape in (('pred keypoints', pred_kpts,
                                      (n, k, 2)), ('pred keypoints_depth', pred_depth, (n, k)),
                                     ('gt keypoints_depth', gt_depth,
                                      (n, k)), ('gt keypoints_visible', visible, (n, k))):
                if arr.shape != shape:
                    raise UserValueError(f'DepthKeypointMetric: {name} has shape {arr.shape}, '
                                         f'expected {shape} to match gt keypoints.')
            if k != 9:
                raise UserValueError('DepthKeypointMetric: objectron_2d_error needs 9 '
                                     f'keypoints (centre + 8 box corners), got K={k}; check '
                                     'the dataset metainfo.')
            if 'ori_shape' not in sample:
                raise UserValueError('DepthKeypointMetric: data sample has no `ori_shape`; '
                                     "keep 'ori_shape' in PackPoseInputs meta_keys.")
            img_h, img_w = sample['ori_shape'][:2]

            if self.pck_normalize == 'frame':
                norm = np.full(n, max(img_w, img_h), dtype=np.float64)
            else:
                bboxes = self._field(sample, 'gt_instances', 'bboxes')
                bboxes = bboxes.reshape(n, 4)
                norm = np.maximum(bboxes[:, 2] - bboxes[:, 0], bboxes[:, 3] - bboxes[:, 1])

            wh = np.array([img_w, img_h], dtype=np.float64)
            corner_err = np.linalg.norm((pred_kpts[:, 1:] - gt_kpts[:, 1:]) / wh, axis=-1)
            # Objectron's filter: which true boxes its 2D error counts.
            gt_inst = sample.get('gt_instances', {})
            centre_z = (
                _np(gt_inst['keypoints_3d']).reshape(n, k, 3)[:, 0, 2]
                if 'keypoints_3d' in gt_inst else gt_depth[:, 0])
            vis = float(sample.get('objectron_visibility', 1.0))
            counted = np.array(
                [is_evaluated(vis, gt_kpts[i, 0] / wh, centre_z[i]) for i in range(n)], dtype=bool)
            self.results.append(
                dict(
                    err_px=np.linalg.norm(pred_kpts - gt_kpts, axis=-1),
                    err_depth=np.abs(pred_depth - gt_depth),
                    mask=visible > 0,
                    norm=norm,
                    objectron=corner_err.mean(axis=1),
                    objectron_counted=counted))

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        """Pool the stored errors into the four metrics."""
        logger = MMLogger.get_current_instance()
        err_px = np.concatenate([r['err_px'] for r in results])  # (M, K)
        err_depth = np.concatenate([r['err_depth'] for r in results])
        mask = np.concatenate([r['mask'] for r in results])
        norm = np.concatenate([r['norm'] for r in results])  # (M,)
        objectron = np.concatenate([r['objectron'] for r in results])
        counted = np.concatenate([r['objectron_counted'] for r in results])

        if not mask.any():
            logger.warning('DepthKeypointMetric: no visible ground-truth '
                           'keypoint; 2D/depth/PCK metrics are NaN.')
            nan = float('nan')
            px, pck, depth = nan, nan, nan
        else:
            px = float(err_px[mask].mean())
            hits = err_px <= self.pck_thr * norm[:, None]
            pck = float(hits[mask].mean())
            depth = float(err_depth[mask].mean())
        if counted.any():
            objectron_2d = float(objectron[counted].mean())
        else:
            logger.warning('DepthKeypointMetric: no instance passes Objectron\'s '
                           'filter (visibility > 0.1, centre inside the frame, in '
                           'front of the camera); objectron_2d_error is NaN.')
            objectron_2d = float('nan')
        return dict(
            mean_px_error=px, PCK=pck, mean_depth_error=depth, objectron_2d_error=objectron_2d)

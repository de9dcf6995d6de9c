"""Category-agnostic pose estimator: supports + pose graph + query -> query keypoints."""
from typing import Dict, Optional, Tuple

import numpy as np
import torch
from mmengine.structures import InstanceData
from mmpose.models.pose_estimators.base import BasePoseEstimator
from mmpose.registry import MODELS
from mmpose.utils.typing import (ConfigType, OptConfigType, OptMultiConfig,
                                 OptSampleList, SampleList)
from torch import Tensor

from ..heads.cape_sequence_head import skeleton_adjacency


@MODELS.register_module()
class CapeEstimator(BasePoseEstimator):
    """Support images + support keypoints + skeleton + query image -> keypoints.

    Subclasses mmpose's ``BasePoseEstimator`` (not a bare ``BaseModel``) because it
    already builds backbone/neck/head from ``MODELS``, routes ``loss``/``predict``
    modes, attaches ``train_cfg``/``test_cfg`` to the head and converts old
    checkpoints; and because mmpose's tooling (visualisation hook, inferencer,
    ``tools/test.py``) expects a pose estimator returning ``PoseDataSample`` with
    ``pred_instances``.

    The backbone runs once on all crops of the batch, (B * (1 + N), 3, H, W). The
    episode's support keypoints (``support_transformed_keypoints`` of the
    metainfo, crop pixels) are normalised to [0, 1] and padded to the batch's
    largest keypoint count, with masks, so a batch may mix categories. The query's
    ground truth is read only by :meth:`loss`; :meth:`predict` decodes
    autoregressively from the supports and the query image alone.

    Args:
        backbone (dict): Backbone config (e.g. mmpose ``ResNet``).
        head (dict): ``CapeSequenceHead`` config.
        neck (dict, optional): Neck config.
        feature_index (int): Which backbone/neck output level to use.
        data_preprocessor (dict, optional): Defaults to ``CapeDataPreprocessor``
            with ImageNet mean/std and BGR->RGB.
        train_cfg, test_cfg, init_cfg, metainfo: As in ``BasePoseEstimator``.
    """

    def __init__(self,
                 backbone: ConfigType,
                 head: ConfigType,
                 neck: OptConfigType = None,
                 feature_index: int = -1,
                 train_cfg: OptConfigType = None,
                 test_cfg: OptConfigType = None,
                 data_preprocessor: OptConfigType = None,
                 init_cfg: OptMultiConfig = None,
                 metainfo: Optional[dict] = None):
        if data_preprocessor is None:
            data_preprocessor = dict(
                type='CapeDataPreprocessor', mean=[123.675, 116.28, 103.53],
                std=[58.395, 57.12, 57.375], bgr_to_rgb=True)
        super().__init__(
            backbone=backbone, neck=neck, head=head, train_cfg=train_cfg,
            test_cfg=test_cfg, data_preprocessor=data_preprocessor,
            init_cfg=init_cfg, metainfo=metainfo)
        self.feature_index = feature_index

    # ---------------------------------------------------------------- features
    def extract_feat(self, inputs: Tensor) -> Tuple[Tensor, Tensor]:
        """(B, 1 + N, 3, H, W) -> query (B, C, h, w), supports (B, N, C, h, w)."""
        if inputs.dim() != 5:
            raise ValueError('CapeEstimator expects inputs (B, 1 + num_shots, 3, H, W)'
                             f', got {tuple(inputs.shape)}; use CapeDataPreprocessor')
        b, s = inputs.shape[:2]
        x = self.backbone(inputs.flatten(0, 1))
        if self.with_neck:
            x = self.neck(x)
        if isinstance(x, (tuple, list)):
            x = x[self.feature_index]
        x = x.view(b, s, *x.shape[1:])
        return x[:, 0], x[:, 1:]

    def _episode(self, data_samples: SampleList, num_shots: int, device,
                 with_targets: bool) -> Dict[str, Tensor]:
        """Padded episode tensors from the data samples (see the head)."""
        ks = [int(ds.metainfo['num_keypoints']) for ds in data_samples]
        b, kmax = len(ks), max(ks)
        sup_xy = torch.zeros(b, num_shots, kmax, 2)
        sup_vis = torch.zeros(b, num_shots, kmax, dtype=torch.bool)
        for i, ds in enumerate(data_samples):
            w, h = ds.metainfo['input_size']
            xy = np.asarray(ds.metainfo['support_transformed_keypoints'], np.float32)
            vis = np.asarray(ds.metainfo['support_keypoints_visible']) > 0
            if xy.shape[0] != num_shots:
                raise ValueError(f'CapeEstimator: sample {i} has {xy.shape[0]} support '
                                 f'keypoint sets but {num_shots} support images')
            xy = torch.from_numpy(xy / np.array([w, h], np.float32))
            # a support keypoint outside the crop has no feature to sample
            inside = ((xy >= 0) & (xy < 1)).all(-1)
            sup_xy[i, :, :ks[i]] = xy.clamp(0, 1)
            sup_vis[i, :, :ks[i]] = torch.from_numpy(vis) & inside
        episode = dict(
            support_keypoints=sup_xy.to(device), support_visible=sup_vis.to(device),
            num_keypoints=torch.tensor(ks, dtype=torch.long, device=device),
            adjacency=skeleton_adjacency(
                [ds.metainfo.get('skeleton', []) for ds in data_samples], ks, kmax,
                device=device))
        if with_targets:
            tgt = torch.zeros(b, kmax, 2)
            wgt = torch.zeros(b, kmax)
            for i, ds in enumerate(data_samples):
                w, h = ds.metainfo['input_size']
                gt = ds.gt_instances
                xy = torch.as_tensor(np.asarray(gt.transformed_keypoints)[0],
                                     dtype=torch.float32) / torch.tensor([w, h])
                vis = torch.as_tensor(np.asarray(gt.keypoints_visible)[0]) > 0
                inside = ((xy >= 0) & (xy < 1)).all(-1)
                tgt[i, :ks[i]] = xy.clamp(0, 1)
                wgt[i, :ks[i]] = (vis & inside).float()
            episode.update(targets=tgt.to(device), target_weights=wgt.to(device))
        return episode

    # ------------------------------------------------------------------ modes
    def forward(self, inputs: Tensor, data_samples: OptSampleList = None,
                mode: str = 'tensor'):
        # 'tensor' mode needs the data samples too (the supports' keypoints).
        if mode == 'tensor':
            if isinstance(inputs, list):
                inputs = torch.stack(inputs)
            return self._forward(inputs, data_samples)
        return super().forward(inputs, data_samples, mode)

    def _forward(self, inputs: Tensor, data_samples: OptSampleList = None
                 ) -> Dict[str, Tensor]:
        """Raw autoregressive outputs (normalised crop coordinates)."""
        if not data_samples:
            raise ValueError('CapeEstimator needs data_samples (support keypoints '
                             'and skeleton) in every mode')
        feats = self.extract_feat(inputs)
        episode = self._episode(data_samples, inputs.shape[1] - 1, inputs.device,
                                with_targets=False)
        return self.head.predict(feats, episode, self.test_cfg)

    def loss(self, inputs: Tensor, data_samples: SampleList) -> dict:
        """Teacher-forced ``loss_ce`` and ``loss_coords``."""
        feats = self.extract_feat(inputs)
        episode = self._episode(data_samples, inputs.shape[1] - 1, inputs.device,
                                with_targets=True)
        return self.head.loss(feats, episode, self.train_cfg)

    def predict(self, inputs: Tensor, data_samples: SampleList) -> SampleList:
        """Autoregressive prediction; fills ``pred_instances`` of each sample.

        ``pred_instances.keypoints`` (1, K, 2) are in original image pixels (NaN
        for keypoints after an early end token), ``keypoint_scores`` (1, K).
        """
        out = self._forward(inputs, data_samples)
        coords = out['coords'].float().cpu().numpy()
        scores = out['scores'].float().cpu().numpy()
        for i, ds in enumerate(data_samples):
            k = int(ds.metainfo['num_keypoints'])
            center = np.asarray(ds.metainfo['input_center'], np.float32)
            scale = np.asarray(ds.metainfo['input_scale'], np.float32)
            # inverse of the top-down crop: [0, 1] crop -> original pixels
            kpts = coords[i, :k] * scale + center - 0.5 * scale
            pred = InstanceData()
            pred.keypoints = kpts[None].astype(np.float32)
            pred.keypoint_scores = scores[i, :k][None].astype(np.float32)
            pred.keypoints_visible = pred.keypoint_scores.copy()
            if 'gt_instances' in ds and 'bboxes' in ds.gt_instances:
                # the query box is an input of the top-down crop, not a result
                pred.bboxes = np.asarray(ds.gt_instances.bboxes, np.float32)
                pred.bbox_scores = np.ones(1, np.float32)
            ds.pred_instances = pred
        return data_samples

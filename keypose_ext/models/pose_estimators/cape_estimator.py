"""Category-agnostic pose estimator: supports + pose graph + query -> query keypoints."""
from typing import Dict, Optional, Tuple

import torch
from mmpose.models.pose_estimators.topdown import TopdownPoseEstimator
from mmpose.registry import MODELS
from mmpose.utils.typing import ConfigType, OptConfigType, OptMultiConfig, OptSampleList
from torch import Tensor

from ...utils.errors import UserValueError


@MODELS.register_module()
class CapeEstimator(TopdownPoseEstimator):
    """Support images + support keypoints + skeleton + query image -> keypoints.

    A top-down estimator whose input is an episode: each sample is the query crop
    and its N support crops, (1 + N, 3, H, W) (``PackCapeInputs``,
    ``CapeDataPreprocessor``). Everything else is ``TopdownPoseEstimator``'s:
    :meth:`loss` is ``head.loss(feats, data_samples, train_cfg)``, :meth:`predict` is
    ``head.predict(feats, data_samples, test_cfg)`` (an ``InstanceList`` in crop
    pixels) followed by its ``add_pred_to_datasample``, which maps the keypoints to
    the original image and copies the query box. This class only changes
    :meth:`extract_feat` (the backbone runs once on all crops of the batch,
    (B * (1 + N), 3, H, W), and returns query and support features) and the
    ``'tensor'`` mode, whose head pass needs the supports' keypoints from the
    data samples. The query's ground truth is read only by the loss.

    Args:
        backbone (dict): Backbone config (e.g. mmpose ``ResNet``).
        head (dict): ``CapeSequenceHead`` config.
        neck (dict, optional): Neck config.
        feature_index (int): Which backbone/neck output level to use.
        data_preprocessor (dict, optional): Defaults to ``CapeDataPreprocessor``
            with ImageNet mean/std and BGR->RGB.
        train_cfg, test_cfg, init_cfg, metainfo: As in ``TopdownPoseEstimator``.
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
                type='CapeDataPreprocessor',
                mean=[123.675, 116.28, 103.53],
                std=[58.395, 57.12, 57.375],
                bgr_to_rgb=True)
        super().__init__(
            backbone=backbone,
            neck=neck,
            head=head,
            train_cfg=train_cfg,
            test_cfg=test_cfg,
            data_preprocessor=data_preprocessor,
            init_cfg=init_cfg,
            metainfo=metainfo)
        self.feature_index = feature_index

    def extract_feat(self, inputs: Tensor) -> Tuple[Tensor, Tensor]:
        """(B, 1 + N, 3, H, W) -> query (B, C, h, w), supports (B, N, C, h, w)."""
        if inputs.dim() != 5:
            raise UserValueError('CapeEstimator expects inputs (B, 1 + num_shots, 3, H, W)'
                                 f', got {tuple(inputs.shape)}; use CapeDataPreprocessor')
        b, s = inputs.shape[:2]
        x = self.backbone(inputs.flatten(0, 1))
        if self.with_neck:
            x = self.neck(x)
        if isinstance(x, (tuple, list)):
            x = x[self.feature_index]
        x = x.view(b, s, *x.shape[1:])
        return x[:, 0], x[:, 1:]

    def forward(self, inputs: Tensor, data_samples: OptSampleList = None, mode: str = 'tensor'):
        # 'tensor' mode needs the data samples too (the supports' keypoints)
        if mode == 'tensor':
            if isinstance(inputs, list):
                inputs = torch.stack(inputs)
            return self._forward(inputs, data_samples)
        return super().forward(inputs, data_samples, mode)

    def _forward(self, inputs: Tensor, data_samples: OptSampleList = None) -> Dict[str, Tensor]:
        """Raw autoregressive outputs (``CapeSequenceHead.decode_sequence``)."""
        if not data_samples:
            raise UserValueError('CapeEstimator needs data_samples (support keypoints '
                                 'and skeleton) in every mode')
        feats = self.extract_feat(inputs)
        episode = self.head.collate_episode(data_samples, inputs.shape[1] - 1, inputs.device)
        return self.head.decode_sequence(feats, episode, self.test_cfg.get('end_threshold'))

"""Global-pool + linear head regressing ``(x, y, depth)`` per keypoint."""
from typing import Optional, Tuple

import torch
from mmengine.structures import InstanceData
from mmpose.models.heads.base_head import BaseHead
from mmpose.registry import KEYPOINT_CODECS, MODELS
from mmpose.utils.tensor_utils import to_numpy
from mmpose.utils.typing import ConfigType, InstanceList, OptConfigType, OptSampleList
from torch import Tensor, nn

from keypose_ext.utils.errors import UserValueError


@MODELS.register_module()
class DepthKeypointRegressionHead(BaseHead):
    """The seed's "ResNet-18 → 27 outputs" head as an mmpose head.

    ``feats[-1]`` (B, C, H, W) → global average pool → ``Linear(C, K * 3)``
    → (B, K, 3) normalised ``[x / W, y / H, encoded depth]`` (see
    :class:`~keypose_ext.codecs.DepthKeypointCodec`).

    The loss is any mmpose regression loss called as
    ``loss(pred (B, K, 3), target (B, K, 3), weight (B, K, 1))``; the default
    is mmpose's ``MSELoss`` with ``use_target_weight=True`` (the seed's MSE,
    with invisible keypoints masked out).

    Args:
        in_channels (int): Channels of the last backbone feature (512 for
            ResNet-18).
        num_joints (int, optional): Number of keypoints ``K``. Defaults to
            the decoder's ``num_keypoints``; one of the two must be given,
            and they must agree (the decoder is then set to ``K``, so its
            ``decode`` refuses other counts too).
        loss (dict): Loss config. Defaults to
            ``dict(type='MSELoss', use_target_weight=True)``.
        decoder (dict, optional): Codec config, normally
            ``dict(type='DepthKeypointCodec', input_size=..., ...)``. Needed
            by :meth:`predict` and by the ``mae_depth`` training log.
        init_cfg (dict | list[dict], optional): Defaults to a small normal
            init of the linear layer, as mmpose's ``RegressionHead``.
    """

    def __init__(self,
                 in_channels: int = 512,
                 num_joints: Optional[int] = None,
                 loss: ConfigType = dict(type='MSELoss', use_target_weight=True),
                 decoder: OptConfigType = None,
                 init_cfg: OptConfigType = None) -> None:
        if init_cfg is None:
            init_cfg = [dict(type='Normal', layer=['Linear'], std=0.01, bias=0)]
        super().__init__(init_cfg)
        if not isinstance(in_channels, int) or in_channels <= 0:
            raise UserValueError('DepthKeypointRegressionHead: `in_channels` '
                                 f'must be a positive int, got {in_channels!r}.')
        self.in_channels = in_channels
        self.loss_module = MODELS.build(loss)
        self.decoder = (KEYPOINT_CODECS.build(decoder) if decoder is not None else None)
        self.num_joints = self._resolve_num_joints(num_joints)

        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_channels, self.num_joints * 3)

    def _resolve_num_joints(self, num_joints: Optional[int]) -> int:
        """``K`` from ``num_joints`` and the decoder's ``num_keypoints``: one
        of them must be set and, when both are, they must agree. The decoder
        is given ``K`` so that it also refuses other counts."""
        codec_k = getattr(self.decoder, 'num_keypoints', None)
        if num_joints is None:
            num_joints = codec_k
        if num_joints is None:
            raise UserValueError('DepthKeypointRegressionHead: set `num_joints` (or the '
                                 "decoder's `num_keypoints`), e.g. NUM_KEYPOINTS from "
                                 'keypose_ext/datasets/bottle_metainfo.py.')
        if not isinstance(num_joints, int) or num_joints <= 0:
            raise UserValueError('DepthKeypointRegressionHead: `num_joints` '
                                 f'must be a positive int, got {num_joints!r}.')
        if codec_k is not None and codec_k != num_joints:
            raise UserValueError(f'DepthKeypointRegressionHead: num_joints={num_joints} but '
                                 f'the decoder has num_keypoints={codec_k}; make them equal '
                                 '(both come from the dataset metainfo, e.g. NUM_KEYPOINTS of '
                                 'keypose_ext/datasets/bottle_metainfo.py).')
        if self.decoder is not None and hasattr(self.decoder, 'num_keypoints'):
            self.decoder.num_keypoints = num_joints
        return num_joints

    def forward(self, feats: Tuple[Tensor]) -> Tensor:
        """Regress normalised ``[x, y, depth]``.

        Args:
            feats (tuple[Tensor]): Backbone outputs; the last one,
                (B, C, H, W) or already pooled (B, C), is used.

        Returns:
            Tensor: (B, K, 3).
        """
        x = feats[-1] if isinstance(feats, (tuple, list)) else feats
        if x.dim() == 4:
            x = self.pool(x)
        x = torch.flatten(x, 1)
        if x.shape[1] != self.in_channels:
            raise UserValueError('DepthKeypointRegressionHead: the last backbone feature has '
                                 f'{x.shape[1]} channels but in_channels={self.in_channels}; '
                                 'set head.in_channels to the backbone output width (512 for '
                                 'ResNet-18/34, 2048 for ResNet-50).')
        # The regression output stays float32 under autocast: bf16 keeps ~3
        # significant digits, too coarse for an overfit loss below 1e-4.
        with torch.autocast(x.device.type, enabled=False):
            out = self.fc(x.float())
        return out.reshape(-1, self.num_joints, 3)

    def _input_size(self, batch_data_samples) -> Tuple[float, float]:
        """Input (W, H) used to turn normalised errors into pixels."""
        meta = batch_data_samples[0].metainfo
        if 'input_size' in meta:
            w, h = meta['input_size']
            return float(w), float(h)
        if self.decoder is not None:
            w, h = self.decoder.input_size
            return float(w), float(h)
        raise UserValueError('DepthKeypointRegressionHead: no `input_size` in the data '
                             'samples and no decoder; add TopdownAffine to the pipeline or a '
                             'decoder to the head.')

    def loss(self,
             feats: Tuple[Tensor],
             batch_data_samples: OptSampleList,
             train_cfg: ConfigType = {}) -> dict:
        """Compute the regression loss and two logged (not optimised) errors.

        Returns:
            dict: ``loss_kpt`` (optimised); ``mpjpe_2d``, the mean 2D error
            in input pixels over weighted keypoints; and, with a decoder,
            ``mae_depth``, the mean absolute depth error in metres. Only keys
            containing ``loss`` are summed by mmengine.
        """
        pred = self.forward(feats)  # (B, K, 3)
        try:
            labels = torch.cat([d.gt_instance_labels.keypoint_labels for d in batch_data_samples])
            weights = torch.cat([d.gt_instance_labels.keypoint_weights for d in batch_data_samples])
        except AttributeError as e:
            raise UserValueError('DepthKeypointRegressionHead.loss: data samples lack '
                                 '`gt_instance_labels.keypoint_labels/keypoint_weights`; the '
                                 "train pipeline needs GenerateTarget(encoder=dict(type="
                                 "'DepthKeypointCodec', ...)) before the packing step.") from e
        if labels.shape != pred.shape:
            raise UserValueError('DepthKeypointRegressionHead.loss: targets have shape '
                                 f'{tuple(labels.shape)} but predictions {tuple(pred.shape)}; '
                                 'each sample must hold one instance with num_joints='
                                 f'{self.num_joints} (x, y, depth) labels.')
        labels = labels.to(pred.dtype)
        weights = weights.to(pred.dtype)

        losses = dict(loss_kpt=self.loss_module(pred, labels, weights.unsqueeze(-1)))

        with torch.no_grad():
            mask = weights > 0
            denom = mask.sum().clamp(min=1)
            # Python floats, not a tensor: no host-to-device copy per step.
            w, h = self._input_size(batch_data_samples)
            diff = pred[..., :2] - labels[..., :2]
            err_2d = torch.sqrt((diff[..., 0] * w)**2 + (diff[..., 1] * h)**2)
            losses['mpjpe_2d'] = (err_2d * mask).sum() / denom
            if self.decoder is not None and hasattr(self.decoder, 'depth_scale'):
                err_d = (pred[..., 2] - labels[..., 2]).abs()
                losses['mae_depth'] = ((err_d * mask).sum() / denom * self.decoder.depth_scale)
        return losses

    def predict(self,
                feats: Tuple[Tensor],
                batch_data_samples: OptSampleList,
                test_cfg: ConfigType = {}) -> InstanceList:
        """Predict keypoints (input-space pixels) and depths (metres).

        Returns:
            list[InstanceData]: One per sample with ``keypoints`` (1, K, 2),
            ``keypoint_scores`` (1, K) and ``keypoints_depth`` (1, K).
            ``TopdownPoseEstimator`` then maps ``keypoints`` to the original
            image.
        """
        if test_cfg.get('flip_test', False):
            # A mirrored image shows a mirrored object; the corners of its 3D
            # box do not map to one fixed permutation, so averaging with a
            # flipped pass would be wrong.
            raise UserValueError('DepthKeypointRegressionHead does not support flip test: '
                                 '3D-box corners have no fixed left/right permutation. Set '
                                 'model.test_cfg.flip_test=False.')
        if self.decoder is None:
            raise UserValueError('DepthKeypointRegressionHead.predict needs a decoder; set '
                                 "head.decoder=dict(type='DepthKeypointCodec', input_size=...)")
        encoded = to_numpy(self.forward(feats))  # (B, K, 3)
        preds = []
        for enc in encoded:
            enc = enc[None]  # (1, K, 3): one instance per top-down sample
            keypoints, scores = self.decoder.decode(enc)
            preds.append(
                InstanceData(
                    keypoints=keypoints,
                    keypoint_scores=scores,
                    keypoints_depth=self.decoder.decode_depth(enc)))
        return preds

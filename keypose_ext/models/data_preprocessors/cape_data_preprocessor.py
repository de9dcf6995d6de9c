"""Normalise the stacked query + support crops of CAPE episodes."""
from typing import Optional

import torch
from mmengine.model import ImgDataPreprocessor
from mmengine.utils import is_seq_of
from mmpose.registry import MODELS

from ...utils.errors import UserValueError


@MODELS.register_module()
class CapeDataPreprocessor(ImgDataPreprocessor):
    """Batch (1 + N, 3, H, W) episode inputs into a normalised (B, 1 + N, 3, H, W).

    ``PoseDataPreprocessor`` expects one (3, H, W) image per sample; a CAPE sample
    (see ``PackCapeInputs``) holds the query crop and its N support crops, which
    all need the same BGR->RGB swap and mean/std normalisation. The crops already
    share one size (``TopdownAffine``), so nothing is padded.

    Args:
        mean, std (Sequence[float], optional): Per-channel mean and std (after
            the channel swap). No normalisation when omitted.
        bgr_to_rgb (bool): Swap BGR (OpenCV) to RGB.
        non_blocking (bool): Non-blocking device transfer.
        blank_query (bool): Diagnostic: replace every query crop by zeros after
            normalisation (the mean colour), in every mode, while the supports stay.
            A model whose answers come from the query image falls to chance; one
            that reads them off the support poses does not. E.g.
            ``tools/test.py CONFIG CKPT --cfg-options
            model.data_preprocessor.blank_query=True``.
    """

    def __init__(self,
                 mean=None,
                 std=None,
                 bgr_to_rgb: bool = False,
                 non_blocking: Optional[bool] = False,
                 blank_query: bool = False):
        super().__init__(mean=mean, std=std, bgr_to_rgb=bgr_to_rgb, non_blocking=non_blocking)
        self.blank_query = bool(blank_query)

    def forward(self, data: dict, training: bool = False) -> dict:
        data = self.cast_data(data)
        inputs = data['inputs']
        if is_seq_of(inputs, torch.Tensor):
            shapes = {tuple(x.shape) for x in inputs}
            if len(shapes) != 1:
                raise UserValueError(f'CapeDataPreprocessor: episodes in one batch differ in shape '
                                     f'{sorted(shapes)} (1 + num_shots, 3, H, W); every item of a '
                                     'batch needs the same num_shots and input_size')
            inputs = torch.stack(list(inputs))
        if not isinstance(inputs, torch.Tensor) or inputs.dim() != 5 \
                or inputs.shape[2] != 3:
            raise UserValueError('CapeDataPreprocessor expects episode inputs of shape '
                                 '(1 + num_shots, 3, H, W) per sample (PackCapeInputs), '
                                 f'got {getattr(inputs, "shape", type(inputs))}')
        if self._channel_conversion:
            inputs = inputs[:, :, [2, 1, 0]]
        inputs = inputs.float()
        if self._enable_normalize:
            inputs = (inputs - self.mean.view(1, 1, -1, 1, 1)) / self.std.view(1, 1, -1, 1, 1)
        if self.blank_query:
            inputs = inputs.clone()
            inputs[:, 0] = 0
        return dict(inputs=inputs, data_samples=data.get('data_samples'))

"""``AmpOptimWrapper`` that trains in float32 when there is no accelerator."""
import logging
from contextlib import contextmanager

import torch
from mmengine.device import is_cuda_available, is_mlu_available, is_musa_available, is_npu_available
from mmengine.logging import print_log
from mmengine.optim import AmpOptimWrapper, OptimWrapper
from mmpose.registry import OPTIM_WRAPPERS


def has_amp_device() -> bool:
    """Whether mmengine's ``AmpOptimWrapper`` can run here (GPU/NPU/MLU/MUSA)."""
    return (is_cuda_available() or is_npu_available() or is_mlu_available() or is_musa_available())


@OPTIM_WRAPPERS.register_module()
class CpuFallbackAmpOptimWrapper(AmpOptimWrapper):
    """MMEngine's ``AmpOptimWrapper``, usable in configs that also run on CPUs.

    With a GPU/NPU/MLU/MUSA it is exactly MMEngine's wrapper. Without one, MMEngine's
    wrapper refuses to build; this one warns once and trains in float32: no autocast,
    and a disabled ``GradScaler`` that passes losses and steps through unchanged, so
    ``accumulative_counts``, ``clip_grad`` and the schedule of the config are kept and
    the updates equal a plain ``OptimWrapper``'s. Checkpoints load both ways (a GPU
    checkpoint's loss-scaler state is ignored on a CPU).

    Args:
        loss_scale, dtype, use_fsdp: as in MMEngine's ``AmpOptimWrapper``; unused on CPU.
        **kwargs: ``optimizer``, ``accumulative_counts``, ``clip_grad``.

    Attributes:
        amp_enabled (bool): False when training in float32 on a CPU.
    """

    _warned = False

    def __init__(self, loss_scale='dynamic', dtype=None, use_fsdp=False, **kwargs):
        self.amp_enabled = has_amp_device()
        if self.amp_enabled:
            super().__init__(loss_scale=loss_scale, dtype=dtype, use_fsdp=use_fsdp, **kwargs)
            return
        if not CpuFallbackAmpOptimWrapper._warned:
            print_log(
                'CpuFallbackAmpOptimWrapper: no GPU/NPU/MLU/MUSA found, training in '
                'float32 (accumulative_counts='
                f'{kwargs.get("accumulative_counts", 1)} kept). Set '
                'optim_wrapper.type="OptimWrapper" to silence this.',
                logger='current',
                level=logging.WARNING)
            CpuFallbackAmpOptimWrapper._warned = True
        # AmpOptimWrapper.__init__ asserts an accelerator; the base class sets up the rest.
        OptimWrapper.__init__(self, **kwargs)
        self._scale_update_param = None
        self.cast_dtype = None
        self.loss_scaler = torch.amp.GradScaler('cpu', enabled=False)

    @contextmanager
    def optim_context(self, model):
        # No CPU autocast: it would switch to bfloat16, not fall back to float32.
        context = (
            super().optim_context(model) if self.amp_enabled else OptimWrapper.optim_context(
                self, model))
        with context:
            yield

"""``AmpOptimWrapper`` that degrades to a plain ``OptimWrapper`` without an accelerator."""
import logging

from mmengine.device import (is_cuda_available, is_mlu_available,
                             is_musa_available, is_npu_available)
from mmengine.logging import print_log
from mmengine.optim import AmpOptimWrapper as _MMEngineAmpOptimWrapper
from mmengine.optim import OptimWrapper
from mmpose.registry import OPTIM_WRAPPERS


def _has_amp_device() -> bool:
    return (is_cuda_available() or is_npu_available() or is_mlu_available()
            or is_musa_available())


@OPTIM_WRAPPERS.register_module(name='AmpOptimWrapper')
class AmpOptimWrapper(_MMEngineAmpOptimWrapper):
    """MMEngine's ``AmpOptimWrapper``, usable in configs that also run on CPUs.

    Registered under the same name in mmpose's scope, so ``type='AmpOptimWrapper'``
    (and ``tools/train.py --amp``) resolves here. With a GPU/NPU/MLU/MUSA it is
    exactly MMEngine's wrapper. Without one, MMEngine's wrapper refuses to build;
    this one warns once and returns an ``OptimWrapper`` with the same optimizer,
    ``accumulative_counts`` and ``clip_grad``, so the schedule (effective batch size)
    of the config is unchanged and only mixed precision is dropped.

    Args:
        loss_scale, dtype, use_fsdp: as in MMEngine's ``AmpOptimWrapper``; ignored on CPU.
        **kwargs: ``optimizer``, ``accumulative_counts``, ``clip_grad``.
    """

    _warned = False

    def __new__(cls, *args, **kwargs):
        if _has_amp_device():
            return super().__new__(cls)
        if not AmpOptimWrapper._warned:
            print_log(
                'AmpOptimWrapper: no GPU/NPU/MLU/MUSA found, training in float32 with a '
                'plain OptimWrapper (accumulative_counts='
                f'{kwargs.get("accumulative_counts", 1)} kept). Set '
                'optim_wrapper.type="OptimWrapper" to silence this.',
                logger='current', level=logging.WARNING)
            AmpOptimWrapper._warned = True
        for amp_only in ('loss_scale', 'dtype', 'use_fsdp'):
            kwargs.pop(amp_only, None)
        # Not an instance of cls, so Python does not call cls.__init__ on it.
        return OptimWrapper(*args, **kwargs)

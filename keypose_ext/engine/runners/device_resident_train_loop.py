"""Epoch-based training with the whole (small) training set resident on the device.

Slightly over 300 lines because the fast path (packing, batch draw, autocast,
channels-last, compile, deferred read-back) and its fallback decision must stay in one loop.
"""
import contextlib
import logging
import math
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from mmengine.hooks import LoggerHook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.optim import AmpOptimWrapper
from mmpose.registry import LOOPS
from torch.utils.data import DataLoader

from keypose_ext.engine.hooks.non_finite_loss_hook import NonFiniteLossHook
from keypose_ext.utils.errors import UserRuntimeError, UserValueError
from keypose_ext.utils.pipeline import is_random_transform, transform_name
from .keypose_epoch_based_train_loop import KeyposeEpochBasedTrainLoop

GiB = 1024**3


@LOOPS.register_module()
class DeviceResidentTrainLoop(KeyposeEpochBasedTrainLoop):
    """:class:`KeyposeEpochBasedTrainLoop` that, for a small deterministic training set,
    packs every preprocessed sample once into one device tensor and draws batches from
    it.

    The fast path (taken on CUDA with ``fast_path='auto'``):

    - before the first epoch, every sample goes once through the dataset's pipeline and
      the model's own ``data_preprocessor`` (batch by batch, as in training), and the
      result is kept on the model's device: ``inputs`` (N, C, H, W) and one data sample
      per frame (labels on the device);
    - each epoch takes its batches from the dataloader's own batch sampler (same
      shuffling, same seed, same ``drop_last``), sends the epoch's indices to the device
      once, and gathers every batch there: no DataLoader workers, no host round trip;
    - the model runs channels-last, under bf16 autocast, optionally compiled
      (``nn.Module.compile`` on the backbone and head: checkpoints keep their keys);
    - no per-iteration host synchronisation: the logged values stay on the device and
      are read back in one transfer on the iterations where the ``LoggerHook`` prints
      (and at the end of each epoch). Hooks get ``outputs`` as floats on those
      iterations and ``None`` on the others (``data_batch`` holds the preprocessed
      inputs). A non-finite loss is found at that read-back, which stops training
      naming its iteration: up to one log interval later than ``NonFiniteLossHook``'s
      check before every step, which reads the loss back each step and which the fast
      path therefore bypasses (epoch checkpoints are still only saved after a check).

    Everything else — hooks, validation, checkpoints, ``--resume`` (also mid-epoch),
    the optimizer wrapper, param schedulers — is the Runner's, configured by the same
    keys. With ``fast_path='auto'`` the plain loop (:class:`KeyposeEpochBasedTrainLoop`)
    runs instead on a CPU, with a random pipeline, a ``batch_augments`` preprocessor, a
    ``NonFiniteLossHook(action='skip')`` (skipping a step needs the loss on the host
    before it) or a set larger than ``max_device_gib``; the reason is logged.

    Args:
        runner, dataloader, max_epochs, val_begin, val_interval, dynamic_intervals:
            As mmengine's ``EpochBasedTrainLoop``.
        fast_path (bool | str): ``'auto'`` (on CUDA when possible), ``True`` (also on
            a CPU — how the tests prove both paths give the same losses; an
            unsuitable set is then an error) or ``False`` (always the plain loop).
        autocast (str, optional): ``'bf16'`` (default) runs forward passes under
            ``torch.autocast(dtype=torch.bfloat16)`` on CUDA; None keeps float32.
            Ignored on a CPU, and when the optimizer wrapper brings its own autocast
            (``AmpOptimWrapper``).
        channels_last (bool): Convert the model and each batch to channels-last on
            CUDA. Defaults to True.
        compile (bool | dict): ``torch.compile`` options for the backbone and head
            (True = defaults). Defaults to False.
        max_device_gib (float): Largest packed set (GiB) the fast path takes.
    """

    def __init__(self,
                 runner,
                 dataloader: Union[DataLoader, Dict],
                 max_epochs: int,
                 val_begin: int = 1,
                 val_interval: int = 1,
                 dynamic_intervals: Optional[List[Tuple[int, int]]] = None,
                 fast_path: Union[bool, str] = 'auto',
                 autocast: Optional[str] = 'bf16',
                 channels_last: bool = True,
                 compile: Union[bool, dict] = False,
                 max_device_gib: float = 8.0) -> None:
        super().__init__(runner, dataloader, max_epochs, val_begin, val_interval, dynamic_intervals)
        if fast_path not in (True, False, 'auto'):
            raise UserValueError(f'train_cfg.fast_path must be True, False or "auto", '
                                 f'got {fast_path!r}.')
        if autocast not in (None, 'bf16'):
            raise UserValueError(f'train_cfg.autocast must be "bf16" or None, got '
                                 f'{autocast!r} (fp16 needs loss scaling, which reads '
                                 'the gradients back every step).')
        self.fast_path = fast_path
        self.autocast = autocast
        self.channels_last = channels_last
        self.compile = compile
        self.max_device_gib = max_device_gib
        # Set by run(): whether the fast path is taken, and why (not).
        self.fast_path_active: Optional[bool] = None
        self.fast_path_reason = ''
        # Host reads of the logged values (one per flush): the only syncs per epoch.
        self.num_host_reads = 0
        self._inputs: Optional[torch.Tensor] = None
        self._samples: list = []
        self._pending: List[torch.Tensor] = []
        self._log_keys: Optional[List[str]] = None

    # ------------------------------------------------------------------ setup
    @property
    def _model(self):
        model = self.runner.model
        return model.module if is_model_wrapper(model) else model

    def _device(self) -> torch.device:
        return next(self._model.parameters()).device

    def _unsuitable(self) -> Optional[str]:
        """Why the fast path cannot take this run, or None."""
        dataset = self.dataloader.dataset
        pipeline = getattr(dataset, 'pipeline', None)
        transforms = getattr(pipeline, 'transforms', None)
        if transforms is None:
            return f'{type(dataset).__name__} has no pipeline to inspect'
        random_names = [transform_name(t) for t in transforms if is_random_transform(t)]
        if random_names:
            return f'the pipeline has the random transform {random_names[0]}'
        if getattr(self._model.data_preprocessor, 'batch_augments', None):
            return 'the data preprocessor has batch_augments'
        if self.dataloader.batch_sampler is None:
            return 'the dataloader has no batch sampler'
        for hook in self.runner.hooks:
            if isinstance(hook, NonFiniteLossHook) and hook.action == 'skip':
                return 'NonFiniteLossHook(action="skip") needs the loss before each step'
        return None

    def _decide(self) -> Tuple[bool, str]:
        if self.fast_path is False:
            return False, 'train_cfg.fast_path=False'
        device = self._device()
        if self.fast_path == 'auto' and device.type != 'cuda':
            return False, f'the model is on {device.type}, not CUDA'
        reason = self._unsuitable()
        if reason and self.fast_path is True:
            raise UserValueError(f'train_cfg.fast_path=True but {reason}; remove it or '
                                 'set fast_path="auto".')
        return (False, reason) if reason else (True, f'on {device}')

    def _pack(self) -> None:
        """Every sample through the pipeline and the model's ``data_preprocessor``
        once; keep ``inputs`` (N, C, H, W) and the data samples on the device."""
        dataset, model, device = self.dataloader.dataset, self._model, self._device()
        batch_size = self.dataloader.batch_size or 1
        dtype = torch.bfloat16 if self._autocast_on(device) else torch.float32
        inputs, samples = [], []
        for start in range(0, len(dataset), batch_size):
            items = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
            shapes = {tuple(item['inputs'].shape) for item in items}
            if start == 0:
                per_sample = math.prod(next(iter(shapes))) * torch.finfo(dtype).bits // 8
                gib = per_sample * len(dataset) / GiB
                if gib > self.max_device_gib:
                    raise _TooLarge(f'the packed set needs {gib:.1f} GiB > '
                                    f'train_cfg.max_device_gib={self.max_device_gib}')
            with torch.no_grad():
                data = model.data_preprocessor(
                    dict(
                        inputs=[item['inputs'] for item in items],
                        data_samples=[item['data_samples'] for item in items]), True)
            inputs.append(data['inputs'].to(dtype))
            samples.extend(data['data_samples'])
        shapes = {tuple(x.shape[1:]) for x in inputs}
        if len(shapes) != 1:
            raise _TooLarge(f'the samples have different input shapes {sorted(shapes)}')
        self._inputs = torch.cat(inputs).to(device)
        if self._channels_last_on(device):
            self._inputs = self._inputs.contiguous(memory_format=torch.channels_last)
        self._samples = samples

    def _autocast_on(self, device: torch.device) -> bool:
        # an AMP wrapper already autocasts (fp16 with loss scaling)
        amp = isinstance(self.runner.optim_wrapper, AmpOptimWrapper)
        return self.autocast == 'bf16' and device.type == 'cuda' and not amp

    def _channels_last_on(self, device: torch.device) -> bool:
        return self.channels_last and device.type == 'cuda'

    def _prepare_model(self, device: torch.device) -> None:
        model = self._model
        if self._channels_last_on(device):
            # Parameters keep their identity (``param.data`` is replaced), so the
            # optimizer built by the Runner still holds them.
            model.to(memory_format=torch.channels_last)
        if self.compile:
            options = self.compile if isinstance(self.compile, dict) else {}
            for name in ('backbone', 'neck', 'head'):
                module = getattr(model, name, None)
                if isinstance(module, torch.nn.Module):
                    module.compile(**options)

    def run(self) -> torch.nn.Module:
        active, reason = self._decide()
        if active:
            try:
                self._pack()
            except _TooLarge as e:
                if self.fast_path is True:
                    raise UserValueError(f'train_cfg.fast_path=True but {e}.') from None
                active, reason = False, str(e)
        self.fast_path_active, self.fast_path_reason = active, reason
        if active:
            self._prepare_model(self._device())
            print_log(
                f'DeviceResidentTrainLoop: fast path {reason}: {len(self._samples)} samples '
                f'packed as {tuple(self._inputs.shape)} {self._inputs.dtype}; '
                f'autocast={"bf16" if self._autocast_on(self._device()) else None}, '
                f'channels_last={self._channels_last_on(self._device())}, '
                f'compile={bool(self.compile)}',
                logger='current')
        else:
            print_log(
                f'DeviceResidentTrainLoop: plain loop ({reason}).',
                logger='current',
                level=logging.INFO)
        return super().run()

    # --------------------------------------------------------------- training
    def run_epoch(self) -> None:
        if not self.fast_path_active:
            return super().run_epoch()
        self.runner.call_hook('before_train_epoch')  # DistSamplerSeedHook sets the epoch
        self.runner.model.train()
        device = self._device()
        batches = [list(b) for b in self.dataloader.batch_sampler]
        # Resumed from a mid-epoch checkpoint: skip what the interrupted run trained,
        # as KeyposeEpochBasedTrainLoop does (the sampler repeats the epoch's order).
        done = self._iter - self._epoch * len(batches)
        if not 0 < done < len(batches):
            done = 0
        self._restore_rng_state()
        flat = torch.tensor([i for b in batches[done:] for i in b], dtype=torch.long)
        if device.type == 'cuda':
            flat = flat.pin_memory()
        flat = flat.to(device, non_blocking=True)  # one transfer per epoch
        interval = self._log_interval()
        start = 0
        for idx in range(done, len(batches)):
            host_idx = batches[idx]
            dev_idx = flat[start:start + len(host_idx)]
            start += len(host_idx)
            flush = (idx + 1) % interval == 0 or idx == len(batches) - 1
            self._run_fast_iter(idx, host_idx, dev_idx, flush)
        self.runner.call_hook('after_train_epoch')
        self._epoch += 1

    def _log_interval(self) -> int:
        for hook in self.runner.hooks:
            if isinstance(hook, LoggerHook):
                return max(1, int(hook.interval))
        return 10**9  # no logger: read back once per epoch

    def _run_fast_iter(self, idx: int, host_idx: Sequence[int], dev_idx: torch.Tensor,
                       flush: bool) -> None:
        inputs = self._inputs.index_select(0, dev_idx)
        if self._channels_last_on(inputs.device):
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        data_batch = dict(inputs=inputs, data_samples=[self._samples[i] for i in host_idx])
        self.runner.call_hook('before_train_iter', batch_idx=idx, data_batch=data_batch)
        log_vars = self._train_step(data_batch)
        if self._log_keys is None:
            self._log_keys = list(log_vars)
        self._pending.append(torch.stack([log_vars[k].detach().float() for k in self._log_keys]))
        outputs = self._read_back() if flush else None
        self.runner.call_hook(
            'after_train_iter', batch_idx=idx, data_batch=data_batch, outputs=outputs)
        self._iter += 1

    def _train_step(self, data: dict) -> Dict[str, torch.Tensor]:
        """``BaseModel.train_step`` minus the preprocessing (done once in ``_pack``),
        plus bf16 autocast."""
        model, optim_wrapper = self.runner.model, self.runner.optim_wrapper
        device = data['inputs'].device
        amp = (
            torch.autocast(device.type, dtype=torch.bfloat16)
            if self._autocast_on(device) else contextlib.nullcontext())
        with optim_wrapper.optim_context(model), amp:
            losses = model._run_forward(data, mode='loss')
        parsed_losses, log_vars = self._model.parse_losses(losses)
        # The class's method: NonFiniteLossHook replaces the instance's with one that
        # reads the loss back before every step; _read_back checks instead.
        type(optim_wrapper).update_params(optim_wrapper, parsed_losses)
        return log_vars

    def _read_back(self) -> Dict[str, float]:
        """One device-to-host copy of the logged values since the last read; all
        but the newest go to the message hub here, the newest is returned as the
        iteration's ``outputs`` (RuntimeInfoHook records it, in order)."""
        values = torch.stack(self._pending).cpu().tolist()
        first_iter = self._iter + 1 - len(values)
        self._pending = []
        self.num_host_reads += 1
        for i, row in enumerate(values):
            if not all(math.isfinite(v) for v in row):
                terms = ', '.join(f'{k}={v:.4g}' for k, v in zip(self._log_keys, row))
                raise UserRuntimeError(
                    f'iteration {first_iter + i + 1} (epoch {self._epoch + 1}): '
                    f'non-finite loss ({terms}); training stopped at the next log line, '
                    f'{len(values) - i - 1} step(s) later (epoch checkpoints are only '
                    'saved after this check). Lower the learning rate or check the data; '
                    'train_cfg.fast_path=False checks before every step.')
        hub = self.runner.message_hub
        for row in values[:-1]:
            for key, value in zip(self._log_keys, row):
                hub.update_scalar(f'train/{key}', value)
        return dict(zip(self._log_keys, values[-1]))


class _TooLarge(Exception):
    """The set does not fit the fast path (internal: turned into a fallback)."""

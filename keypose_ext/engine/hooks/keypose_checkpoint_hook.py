"""MMEngine's ``CheckpointHook`` with checkpoints that survive a kill at any moment."""
import math
import os.path as osp
from collections import deque
from typing import List

import numpy as np
import torch
from mmengine.dist import is_main_process
from mmengine.fileio import LocalBackend, get_file_backend
from mmengine.hooks import CheckpointHook
from mmengine.model import is_model_wrapper
from mmpose.registry import HOOKS

from keypose_ext.utils.atomic_local_backend import BACKEND_NAME
from keypose_ext.utils.errors import UserRuntimeError
from keypose_ext.utils.io import atomic_write, remove_stale_temporaries
from keypose_ext.utils.rng_state import capture_rng_state
from keypose_ext.utils.safe_checkpoint_globals import mmengine_checkpoint_globals
from keypose_ext.utils.work_dir_lock import acquire_work_dir_lock, release_work_dir_lock

RNG_KEY = 'keypose_rng_state'


@HOOKS.register_module()
class KeyposeCheckpointHook(CheckpointHook):
    """``CheckpointHook`` whose checkpoints are always complete, and never a NaN "best".

    Same arguments and files as MMEngine's hook. What differs:

    - Checkpoints and ``last_checkpoint`` are written atomically (temporary file,
      fsync, rename; mode 0644) through the ``'keypose_atomic_local'`` backend when the
      folder is local.
    - Order: the new checkpoint is complete and ``last_checkpoint`` names it before an
      older one (``max_keep_ckpts``, the previous best) is deleted; the stock hook
      deletes first, so a kill mid-save with ``max_keep_ckpts=1`` can leave nothing.
      The checkpoint lists the ids it replaces, so if the run dies before deleting
      them, the next start (``CheckpointHook.before_train`` on resume) does.
    - At the start of training: one run per work dir (a lock; a second run names the
      process that holds it), and temporaries of a killed save are deleted.
    - A validation whose predictions hold NaN/inf, or whose ``save_best`` score is not
      finite, is never saved as the best (NaN predictions score 0 on PCK/AP, which
      beats the initial -inf).
    - A model with non-finite weights is not saved: training stops with one line, and
      the last good checkpoint stays the last.
    - Each checkpoint also holds the Python/numpy/torch random states
      (``keypose_rng_state``), which ``KeyposeEpochBasedTrainLoop`` restores on resume.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._locked_dir = None
        self._nonfinite_predictions = 0
        self.resumed_rng_state = None  # taken by KeyposeEpochBasedTrainLoop

    # ------------------------------------------------------------------ start / end
    def before_train(self, runner) -> None:
        if is_main_process() and acquire_work_dir_lock(runner.work_dir):
            self._locked_dir = runner.work_dir
        super().before_train(runner)
        backend = (self.backend_args or {}).get('backend', 'local')
        if (self.file_client_args is None and backend in ('local', BACKEND_NAME)
                and isinstance(self.file_backend, LocalBackend)):
            self.backend_args = dict(self.backend_args or {}, backend=BACKEND_NAME)
            self.file_backend = get_file_backend(self.out_dir, backend_args=self.backend_args)
            if is_main_process():
                removed = remove_stale_temporaries(self.out_dir)
                removed += remove_stale_temporaries(runner.work_dir)
                if removed:
                    runner.logger.warning(f'KeyposeCheckpointHook: removed {len(removed)} '
                                          f'temporary file(s) of an interrupted save: {removed}')

    def after_train(self, runner) -> None:
        # publishing reloads our own checkpoints with torch.load
        with mmengine_checkpoint_globals():
            super().after_train(runner)

    def after_run(self, runner) -> None:
        if self._locked_dir is not None:
            release_work_dir_lock(self._locked_dir)
            self._locked_dir = None

    # ------------------------------------------------------------- random state
    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint[RNG_KEY] = capture_rng_state()

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        self.resumed_rng_state = checkpoint.get(RNG_KEY)

    # ------------------------------------------------------------------ saving
    def _save_checkpoint(self, runner) -> None:
        self._check_finite_weights(runner)
        super()._save_checkpoint(runner)

    def _save_checkpoint_with_step(self, runner, step, meta) -> None:
        stale = []
        if self.max_keep_ckpts > 0 and not (self.keep_ckpt_ids and self.keep_ckpt_ids[-1] == step):
            ids = list(self.keep_ckpt_ids) + [step]
            stale = ids[:-self.max_keep_ckpts]
            runner.message_hub.update_info('keep_ckpt_ids', ids)  # saved with the file
            self.keep_ckpt_ids = deque(ids[-self.max_keep_ckpts:], self.max_keep_ckpts)
        filename = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir, filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        runner.save_checkpoint(
            self.out_dir,
            filename,
            self.file_client_args,
            save_optimizer=self.save_optimizer,
            save_param_scheduler=self.save_param_scheduler,
            meta=meta,
            by_epoch=self.by_epoch,
            backend_args=self.backend_args,
            **self.args)
        if self.max_keep_ckpts > 0:
            runner.message_hub.update_info('keep_ckpt_ids', list(self.keep_ckpt_ids))
        if not is_main_process():
            return
        with atomic_write(osp.join(runner.work_dir, 'last_checkpoint'), 'w') as f:
            f.write(self.last_ckpt)
        for old in stale:  # only now that the new file and its pointer are complete
            self._remove(self.file_backend.join_path(self.out_dir, self.filename_tmpl.format(old)))

    def _save_best_checkpoint(self, runner, metrics) -> None:
        if not self.save_best:
            return
        where = f'{"epoch" if self.by_epoch else "iteration"} ' \
                f'{runner.epoch if self.by_epoch else runner.iter}'
        if self._nonfinite_predictions:
            runner.logger.warning(
                f'KeyposeCheckpointHook: {self._nonfinite_predictions} validation '
                f'prediction(s) at {where} are NaN/inf; not a candidate for the best '
                'checkpoint')
            return
        keys = [list(metrics)[0] if k == 'auto' else k for k in self.key_indicators]
        bad = [k for k in keys if k in metrics and not _is_finite(metrics[k])]
        if bad:
            runner.logger.warning(f'KeyposeCheckpointHook: {bad} not finite at {where}; '
                                  'not a candidate for the best checkpoint')
            return
        # The stock hook deletes the previous best before writing the new one.
        pending: List[str] = []
        backend = self.file_backend
        self.file_backend = _DeferredRemoval(backend, pending)
        try:
            super()._save_best_checkpoint(runner, metrics)
        finally:
            self.file_backend = backend
        for path in pending:
            self._remove(path)

    def _remove(self, path: str) -> None:
        if self.file_backend.isfile(path):
            self.file_backend.remove(path)
        elif self.file_backend.isdir(path):  # deepspeed checkpoints are folders
            self.file_backend.rmtree(path)

    def _check_finite_weights(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        tensors = list(model.named_parameters()) + list(model.named_buffers())
        bad = [n for n, t in tensors if t.is_floating_point() and not torch.isfinite(t).all()]
        if bad:
            last = runner.message_hub.get_info('last_ckpt') or 'none (none was saved)'
            done = runner.iter if self.by_epoch else runner.iter + 1  # after_train_epoch/iter
            raise UserRuntimeError(
                f'epoch {runner.epoch + 1}, iteration {done}: the model has '
                f'non-finite weights ({len(bad)} tensors, e.g. {bad[0]}); no checkpoint '
                f'saved, the last good one stays {last}. Lower the learning rate or '
                'check the data')

    # ------------------------------------------------------------- validation
    def before_val_epoch(self, runner) -> None:
        self._nonfinite_predictions = 0

    def after_val_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        for sample in outputs or []:
            pred = getattr(sample, 'pred_instances', None)
            if pred is not None and not all(_is_finite(v) for _, v in pred.items()):
                self._nonfinite_predictions += 1


class _DeferredRemoval:
    """A file backend whose ``remove``/``rmtree`` only note the path."""

    def __init__(self, backend, pending: List[str]):
        self._backend = backend
        self._pending = pending

    def __getattr__(self, name):
        return getattr(self._backend, name)

    def remove(self, path) -> None:
        self._pending.append(path)

    def rmtree(self, path) -> None:
        self._pending.append(path)


def _is_finite(value) -> bool:
    """False for a NaN/inf number or float array; True for anything else."""
    if isinstance(value, torch.Tensor):
        return not value.is_floating_point() or bool(torch.isfinite(value).all())
    if isinstance(value, np.ndarray):
        return value.dtype.kind != 'f' or bool(np.isfinite(value).all())
    if isinstance(value, (float, np.floating)):
        return math.isfinite(value)
    return True

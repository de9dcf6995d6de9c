"""MMEngine's ``Runner`` with the project's loading, scaling and CPU-DDP rules."""
import contextlib
import datetime
import errno
import os.path as osp
import pickle
import re
import zipfile
from typing import Iterator

import torch
from mmengine.dist import is_distributed, is_main_process
from mmengine.logging import print_log
from mmengine.optim import OptimWrapperDict
from mmengine.runner import Runner
from mmengine.runner.checkpoint import find_latest_checkpoint
from mmpose.registry import RUNNERS

from keypose_ext.utils.errors import UserFileNotFoundError, UserValueError
from keypose_ext.utils.safe_checkpoint_globals import mmengine_checkpoint_globals
from keypose_ext.utils.torchvision_checkpoints import torchvision_download_errors
from keypose_ext.utils.work_dir_lock import acquire_work_dir_lock, release_work_dir_lock

_NOT_A_CHECKPOINT = ('it is truncated, corrupt or not a PyTorch checkpoint; pick another '
                     'one (e.g. an earlier epoch_*.pth) or train again')


@RUNNERS.register_module()
class KeyposeRunner(Runner):
    """``Runner`` used by ``tools/train.py`` and ``tools/test.py``.

    Differences from MMEngine's runner:

    - Checkpoints load with ``torch.load(weights_only=True)`` and exactly the MMEngine
      types allowed, only during the load (``mmengine_checkpoint_globals``). A missing,
      empty, truncated or random-bytes file, or one that asks to unpickle anything
      else (refused), ends in one line naming the file.
    - ``load_from`` must fit the model: a checkpoint with missing, unexpected or
      mis-shaped weights fails unless ``cfg.load_partial=True``
      (``--load-partial``). ``resume`` always needs a full fit.
    - ``resume=True`` without ``load_from`` takes ``<work_dir>/last_checkpoint``; if it
      names a file that was moved with the work dir, the file of that name in the work
      dir.
    - ``auto_scale_lr`` scales by world size x batch size x ``accumulative_counts``
      (MMEngine leaves the accumulation out).
    - ``train()`` holds the work-dir lock (one run per work dir).
    - Distributed on a machine without CUDA (``tools/dist_train.sh CONFIG 2``): gloo
      instead of nccl and a CPU ``MMDistributedDataParallel`` (MMEngine's ``init_dist``
      calls ``torch.cuda.set_device`` and its DDP wrapper sets ``device_ids``).
    """

    # ------------------------------------------------------------ environment
    def setup_env(self, env_cfg: dict) -> None:
        if self.distributed and not is_distributed() and not torch.cuda.is_available():
            self._init_cpu_process_group(env_cfg.get('dist_cfg', {}))
        super().setup_env(env_cfg)

    def _init_cpu_process_group(self, dist_cfg: dict) -> None:
        if self.launcher != 'pytorch':
            raise UserValueError(f'--launcher {self.launcher} without CUDA: only '
                                 '--launcher pytorch (tools/dist_train.sh) runs on CPUs')
        timeout = dist_cfg.get('timeout')
        kwargs = dict(timeout=datetime.timedelta(seconds=timeout)) if timeout else {}
        # torchrun sets MASTER_ADDR/PORT, RANK and WORLD_SIZE for env:// rendezvous
        torch.distributed.init_process_group(backend='gloo', **kwargs)
        if torch.distributed.get_rank() == 0:
            print_log(
                f'KeyposeRunner: no CUDA; distributed over gloo on CPUs, '
                f'world size {torch.distributed.get_world_size()} (dist_cfg.backend '
                f'{dist_cfg.get("backend", "nccl")!r} needs GPUs)',
                logger='current')

    def wrap_model(self, model_wrapper_cfg, model):
        if self.distributed and not torch.cuda.is_available():
            # device_ids must be None for a module on the CPU
            model_wrapper_cfg = dict(
                model_wrapper_cfg or dict(
                    type='MMDistributedDataParallel',
                    broadcast_buffers=False,
                    find_unused_parameters=self.cfg.get('find_unused_parameters', False)))
            model_wrapper_cfg.setdefault('device_ids', None)
        return super().wrap_model(model_wrapper_cfg, model)

    # ---------------------------------------------------------------- training
    def train(self):
        took = is_main_process() and acquire_work_dir_lock(self.work_dir)
        try:
            return super().train()
        finally:
            if took:
                release_work_dir_lock(self.work_dir)

    def scale_lr(self, optim_wrapper, auto_scale_lr=None) -> None:
        if not auto_scale_lr or not auto_scale_lr.get('enable', False):
            return
        wrappers = (
            list(optim_wrapper.values())
            if isinstance(optim_wrapper, OptimWrapperDict) else [optim_wrapper])
        counts = {getattr(w, '_accumulative_counts', 1) for w in wrappers}
        if len(counts) != 1:
            raise UserValueError(f'auto_scale_lr: the optimizers accumulate over different '
                                 f'counts {sorted(counts)}; scale their lr by hand')
        accumulation = counts.pop()
        if 'base_batch_size' not in auto_scale_lr:
            raise UserValueError('auto_scale_lr needs base_batch_size (the total batch '
                                 "the config's lr was tuned for)")
        base = auto_scale_lr['base_batch_size']
        if accumulation > 1:
            self.logger.info(f'auto_scale_lr: {accumulation} accumulated batches per '
                             f'update count as one batch of {accumulation} x the batch size')
        # MMEngine's rule is world_size x batch_size / base_batch_size.
        super().scale_lr(optim_wrapper, dict(auto_scale_lr, base_batch_size=base / accumulation))

    # ---------------------------------------------------------------- loading
    def _init_model_weights(self) -> None:
        # init_cfg's torchvision:// weights offline: one line naming the URL and the fix
        with torchvision_download_errors():
            super()._init_model_weights()

    def load_or_resume(self) -> None:
        if not self._has_loaded and self._resume and self._load_from is None:
            self._load_from = self.find_resume_checkpoint()
        super().load_or_resume()

    def find_resume_checkpoint(self):
        """What ``resume=True`` without ``load_from`` resumes from (None: nothing)."""
        latest = find_latest_checkpoint(self.work_dir)
        if latest and not osp.exists(latest):
            moved = osp.join(self.work_dir, osp.basename(latest))
            if not osp.isfile(moved):
                raise UserFileNotFoundError(
                    f'{self.work_dir}/last_checkpoint names {latest}, which does not exist; '
                    'pass --resume CHECKPOINT or delete last_checkpoint to start afresh')
            latest = moved
        return latest

    def load_checkpoint(self,
                        filename,
                        map_location='cpu',
                        strict=None,
                        revise_keys=[(r'^module.', '')]):
        resuming = getattr(self, '_resuming', False)
        if strict is None:
            strict = resuming or not self.cfg.get('load_partial', False)
        with checkpoint_errors(filename, partial_flag=not resuming):
            return super().load_checkpoint(
                filename, map_location=map_location, strict=strict, revise_keys=revise_keys)

    def resume(self,
               filename,
               resume_optimizer=True,
               resume_param_scheduler=True,
               map_location='default') -> None:
        with checkpoint_errors(filename, partial_flag=False):
            self._resuming = True  # a resumed model must fit the checkpoint exactly
            try:
                super().resume(
                    filename,
                    resume_optimizer=resume_optimizer,
                    resume_param_scheduler=resume_param_scheduler,
                    map_location=map_location)
            except KeyError as e:
                if e.args and e.args[0] in ('meta', 'epoch', 'iter', 'message_hub'):
                    raise UserValueError(
                        f'{filename} is not a training checkpoint (no {e.args[0]!r}); '
                        'resume from a checkpoint of tools/train.py, or start from its '
                        'weights with --cfg-options load_from=...') from None
                raise
            finally:
                self._resuming = False


def check_checkpoint_file(filename: str) -> None:
    """Fail fast (before a runner is built) on a file that cannot be a checkpoint.

    Reads the pickled structure only (``mmap=True``: tensors stay on disk), under the
    same allow-list and one-line errors as :class:`KeyposeRunner`'s loading.
    """
    with checkpoint_errors(filename, partial_flag=True):
        if zipfile.is_zipfile(filename):
            torch.load(filename, map_location='cpu', mmap=True)
        else:  # torch's legacy format cannot be memory-mapped
            torch.load(filename, map_location='cpu')


@contextlib.contextmanager
def checkpoint_errors(filename: str, partial_flag: bool) -> Iterator[None]:
    """Allow-list the MMEngine checkpoint types and turn load failures into one line."""
    if isinstance(filename, str) and '://' not in filename:
        if not osp.isfile(filename):
            what = 'is a folder' if osp.isdir(filename) else 'not found'
            raise UserFileNotFoundError(f'checkpoint {filename} {what}; pass the path of '
                                        'a .pth file')
        if osp.getsize(filename) == 0:
            raise UserValueError(f'checkpoint {filename} is empty (0 bytes); '
                                 f'{_NOT_A_CHECKPOINT}')
        if not _looks_like_torch_file(filename):
            # torch's unpickler fails on random bytes with any exception type
            raise UserValueError(f'checkpoint {filename}: {_NOT_A_CHECKPOINT} (neither a '
                                 "complete zip archive nor torch's legacy format)")
    try:
        with mmengine_checkpoint_globals():
            yield
    except pickle.UnpicklingError as e:
        refused = re.search(r'GLOBAL ([\w.]+)', str(e))
        if refused:
            raise UserValueError(
                f'checkpoint {filename}: refused to load: it asks to unpickle '
                f'{refused.group(1)}, which is not a tensor, a number or an MMEngine '
                'training-state type (torch.load weights_only=True; keypose_ext allows '
                'exactly those, since unpickling anything else can run code); use '
                'a checkpoint from tools/train.py, or re-save this one as a plain '
                'state_dict where you trust it') from None
        raise UserValueError(f'checkpoint {filename}: {_NOT_A_CHECKPOINT} ({_first(e)})') from None
    except (EOFError, zipfile.BadZipFile) as e:
        raise UserValueError(f'checkpoint {filename}: {_NOT_A_CHECKPOINT} ({_first(e)})') from None
    except OSError as e:
        if e.errno not in (errno.EINVAL, None):  # EINVAL: torch's zip reader on a stub
            raise
        raise UserValueError(f'checkpoint {filename}: {_NOT_A_CHECKPOINT} ({_first(e)})') from None
    except RuntimeError as e:
        text = str(e)
        if 'PytorchStreamReader' in text or 'zip archive' in text:
            raise UserValueError(f'checkpoint {filename}: {_NOT_A_CHECKPOINT} '
                                 f'({_first(e)})') from None
        if 'do not match exactly' in text:  # mmengine's load_state_dict(strict=True)
            fix = ('; pass --load-partial to load the weights that fit and initialise the '
                   'rest' if partial_flag else '; resume needs the same model')
            raise UserValueError(f'checkpoint {filename} does not fit the model: '
                                 f'{_summary(text)}{fix}') from None
        raise


def _looks_like_torch_file(filename: str) -> bool:
    """A complete zip archive (torch >= 1.6) or torch's legacy pickle header."""
    if zipfile.is_zipfile(filename):
        return True
    head = pickle.dumps(torch.serialization.MAGIC_NUMBER, protocol=2)
    with open(filename, 'rb') as f:
        return f.read(len(head)) == head


def _first(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return (lines[0] if lines else type(e).__name__)[:160]


def _summary(text: str) -> str:
    """mmengine's load_state_dict error, as counts and first keys."""
    parts = []
    for label, pattern in (('missing', r'missing keys in source state_dict: ([^\n]*)'),
                           ('unexpected', r'unexpected key in source state_dict: ([^\n]*)')):
        m = re.search(pattern, text)
        if m:
            keys = [k.strip() for k in m.group(1).split(',') if k.strip()]
            parts.append(f'{len(keys)} {label} (e.g. {keys[0]})')
    shapes = re.findall(r'size mismatch for ([^:]+):', text)
    if shapes:
        parts.append(f'{len(shapes)} of another shape (e.g. {shapes[0]})')
    return ', '.join(parts) or _first(RuntimeError(text))

"""Stop (or skip the step) at a NaN/inf loss, before it reaches the weights."""
import logging

import torch
from mmengine.dist import all_reduce, is_distributed
from mmengine.hooks import Hook
from mmengine.optim import OptimWrapperDict
from mmpose.registry import HOOKS

from keypose_ext.utils.errors import UserRuntimeError, UserValueError

_COUNT_KEY = 'nonfinite_skipped_steps'


@HOOKS.register_module()
class NonFiniteLossHook(Hook):
    """Guards the optimizer against a non-finite loss.

    ``before_train`` wraps the optim wrapper's ``update_params``: when the loss of an
    iteration is NaN/inf (on any rank), its gradients are computed (so DDP's gradient
    reduction completes) and thrown away, and the optimizer does not step. Then, in
    ``after_train_iter`` (before ``CheckpointHook`` can save anything):

    - ``action='stop'``: training ends with one line naming the iteration and the loss
      terms; the last checkpoint, and the best, stay the last good ones.
    - ``action='skip'``: the step is skipped and counted (a warning per step, the
      ``train/skipped_steps`` scalar in the log, the total in the checkpoint); more
      than ``max_consecutive_skips`` in a row stop training as above.

    With gradient accumulation a skipped micro-batch also drops the gradients
    accumulated so far in its window. With several optimizers (``OptimWrapperDict``) the
    model steps them itself; the hook then can only stop after the iteration.

    Args:
        action (str): ``'stop'`` (default) or ``'skip'``.
        max_consecutive_skips (int): With ``'skip'``, stop after this many bad
            iterations in a row. Defaults to 10.
    """

    priority = 'ABOVE_NORMAL'  # before LoggerHook and CheckpointHook

    def __init__(self, action: str = 'stop', max_consecutive_skips: int = 10):
        if action not in ('stop', 'skip'):
            raise UserValueError(f'NonFiniteLossHook: action={action!r}; use "stop" or '
                                 '"skip"')
        self.action = action
        self.max_consecutive_skips = int(max_consecutive_skips)
        self._bad_step = False
        self._consecutive = 0
        self._wrapper = None

    def before_train(self, runner) -> None:
        wrapper = runner.optim_wrapper
        if isinstance(wrapper, OptimWrapperDict) or not hasattr(wrapper, 'update_params'):
            return
        original = wrapper.update_params

        def update_params(loss, step_kwargs=None, zero_kwargs=None):
            if self._all_finite(loss):
                return original(loss, step_kwargs=step_kwargs, zero_kwargs=zero_kwargs)
            self._bad_step = True
            # Backward keeps DDP's reduction and the accumulation count in step;
            # the resulting gradients are discarded and the optimizer does not step.
            wrapper.backward(wrapper.scale_loss(loss))
            wrapper.zero_grad()

        wrapper.update_params = update_params  # this instance only
        self._wrapper = wrapper

    def after_train(self, runner) -> None:
        if self._wrapper is not None:
            del self._wrapper.update_params  # back to the class's method
            self._wrapper = None

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        bad = self._bad_step or not all(
            _finite(v) for k, v in (outputs or {}).items() if 'loss' in k)
        self._bad_step = False
        if not bad:
            self._consecutive = 0
            return
        terms = ', '.join(f'{k}={_as_float(v):.4g}' for k, v in (outputs or {}).items())
        where = f'iteration {runner.iter + 1} (epoch {runner.epoch + 1})'
        self._consecutive += 1
        if self.action == 'skip' and self._consecutive <= self.max_consecutive_skips:
            count = (runner.message_hub.get_info(_COUNT_KEY) or 0) + 1
            runner.message_hub.update_info(_COUNT_KEY, count)
            runner.message_hub.update_scalar('train/skipped_steps', count)
            runner.logger.log(
                logging.WARNING, f'NonFiniteLossHook: {where}: non-finite '
                f'loss ({terms}); step skipped ({count} skipped so far)')
            return
        last = runner.message_hub.get_info('last_ckpt') or 'none (none was saved)'
        best = runner.message_hub.get_info('best_ckpt')
        why = ('' if self.action == 'stop' else
               f' ({self._consecutive} in a row, max_consecutive_skips='
               f'{self.max_consecutive_skips})')
        hint = ('; or set default_hooks.non_finite_loss.action="skip" (tools/train.py '
                '--skip-nonfinite-steps) to skip such steps' if self.action == 'stop' else '')
        raise UserRuntimeError(
            f'{where}: non-finite loss ({terms}){why}; training stopped before the '
            f'optimizer step. Last checkpoint: {last}' + (f', best: {best}' if best else '') +
            f'. Lower the learning rate or check the data{hint}')

    def after_train_epoch(self, runner) -> None:
        count = runner.message_hub.get_info(_COUNT_KEY)
        if count:
            runner.logger.warning(f'NonFiniteLossHook: {count} step(s) skipped so far')

    @staticmethod
    def _all_finite(loss: torch.Tensor) -> bool:
        flag = torch.isfinite(loss.detach()).all().to(torch.float32).reshape(1)
        if is_distributed():  # every rank must take the same branch
            all_reduce(flag, op='min')
        return bool(flag.item())


def _as_float(value) -> float:
    return float(value.detach().mean()) if isinstance(value, torch.Tensor) else float(value)


def _finite(value) -> bool:
    try:
        return bool(torch.isfinite(torch.as_tensor(_as_float(value))))
    except (TypeError, ValueError):
        return True

"""Two-phase fine-tuning: frozen backbone (phase 1), then one of three phase-2 routes."""
import logging
from typing import Optional, Sequence

import torch
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.optim import OptimWrapper
from mmpose.registry import HOOKS

from keypose_ext.utils import sapiens_memory_estimate as mem
from keypose_ext.utils.errors import UserValueError
from keypose_ext.utils.sapiens_archs import resolve_phase2


def _unwrap(model):
    return model.module if is_model_wrapper(model) else model


@HOOKS.register_module()
class SapiensPhaseSwitchHook(Hook):
    """Freeze ``frozen_modules`` before ``switch_epoch``, unfreeze them from it on.

    Epochs are 0-based as in MMEngine: with ``switch_epoch=10`` epochs 0–9 (the
    seed's "first 10 epochs") train the head only and epoch 10 onwards is phase 2.

    Freezing a module:
    - one with ``set_trainable_layers`` (:class:`SapiensTorchScriptBackbone`) is set to
      ``trainable_layers=0`` in phase 1 and in phase 2 follows ``phase2['mode']``:
      ``'lora'`` (adapters on every block's attention and MLP + final norm; needs
      ``model.backbone.lora``), ``'last_blocks'`` (the last ``trainable_layers`` blocks +
      final norm) or ``'full'`` (everything); ``phase2['with_cp']`` sets activation
      checkpointing. It keeps its frozen part in eval mode across ``model.train()``
      and runs it without gradients;
    - any other module gets ``requires_grad=False`` and is put back to eval mode
      before each training iteration (``model.train()`` runs at each epoch start).

    The optimizer must hold all parameters from the start (use
    ``SapiensLayerDecayOptimWrapperConstructor``): parameter objects never change, so
    the optimizer state (e.g. the head's AdamW moments) carries over. When a switch
    changes a parameter's dtype (fp16 frozen storage → fp32 training), its optimizer
    state is cast along.

    Resuming: ``after_load_checkpoint`` puts the model in the phase of the
    checkpoint's epoch *before* the weights and optimizer state are copied in (so
    fine-tuned blocks keep float32), and ``before_train`` re-applies the phase of
    ``runner.epoch``; a run resumed past ``switch_epoch`` therefore continues in
    phase 2. ``tools/test.py`` on a phase-2 checkpoint gets the phase-2 layout too.

    Args:
        switch_epoch (int): First epoch (0-based) of phase 2. 0 = start in phase 2.
        frozen_modules (Sequence[str]): Dotted module names in the model.
        phase2 (dict, optional): ``mode`` (``'lora' | 'last_blocks' | 'full'``),
            ``trainable_layers`` (N for ``'last_blocks'``; without ``mode``, N > 0 means
            ``'last_blocks'`` and -1 ``'full'``) and ``with_cp``.
        check_memory (bool): On a CUDA GPU, warn before training when the estimate of
            the run's config (keypose_ext/utils/sapiens_memory_estimate.py) exceeds the
            GPU (value and fix in the message).
    """

    priority = 'ABOVE_NORMAL'

    def __init__(self,
                 switch_epoch: int = 10,
                 frozen_modules: Sequence[str] = ('backbone', ),
                 phase2: Optional[dict] = None,
                 check_memory: bool = True):
        if int(switch_epoch) < 0:
            raise UserValueError(f'SapiensPhaseSwitchHook switch_epoch={switch_epoch} must '
                                 'be >= 0')
        if isinstance(frozen_modules, str):
            frozen_modules = [frozen_modules]
        self.switch_epoch = int(switch_epoch)
        self.frozen_modules = list(frozen_modules)
        self.phase2 = resolve_phase2(phase2)
        self.check_memory = check_memory
        self.phase: Optional[int] = None

    # ---------------------------------------------------------------- helpers
    def _modules(self, model):
        model = _unwrap(model)
        found = []
        for name in self.frozen_modules:
            mod = model
            for part in name.split('.'):
                if not hasattr(mod, part):
                    children = [n for n, _ in _unwrap(model).named_children()]
                    raise UserValueError(f'SapiensPhaseSwitchHook: frozen_modules entry '
                                         f'{name!r} is not in the model (top-level modules: '
                                         f'{children})')
                mod = getattr(mod, part)
            found.append((name, mod))
        return found

    def phase_of_epoch(self, epoch: int) -> int:
        return 2 if epoch >= self.switch_epoch else 1

    def apply_phase(self, model, phase: int, optim_wrapper=None) -> None:
        """Put ``model`` in ``phase`` (1 or 2); idempotent."""
        root = _unwrap(model)
        for _, mod in self._modules(model):
            if hasattr(mod, 'set_trainable_layers'):
                p2 = self.phase2
                if phase == 1:
                    mod.set_trainable_layers(0)
                elif p2['mode'] == 'lora':
                    mod.set_lora_trainable(with_cp=p2['with_cp'])
                else:
                    mod.set_trainable_layers(p2['trainable_layers'], with_cp=p2['with_cp'])
            else:
                for p in mod.parameters():
                    p.requires_grad_(phase == 2)
                    if phase == 1:
                        p.grad = None
                if phase == 1:
                    mod.eval()
                else:
                    mod.train(root.training)
        if isinstance(optim_wrapper, OptimWrapper):
            self._align_optimizer_state(optim_wrapper.optimizer)
        if phase != self.phase:
            n_train = sum(p.numel() for p in root.parameters() if p.requires_grad)
            n_all = sum(p.numel() for p in root.parameters())
            what = ('frozen ' + ', '.join(self.frozen_modules)
                    if phase == 1 else f"fine-tuning, route {self.phase2['mode']!r}")
            print_log(
                f'SapiensPhaseSwitchHook: phase {phase} ({what}): '
                f'{n_train / 1e6:.2f} M of {n_all / 1e6:.2f} M parameters train',
                logger='current',
                level=logging.INFO)
        self.phase = phase

    @staticmethod
    def _align_optimizer_state(optimizer) -> None:
        for p, state in optimizer.state.items():
            for k, v in state.items():
                if (torch.is_tensor(v) and v.is_floating_point() and k != 'step'
                        and v.shape == p.shape and v.dtype != p.dtype):
                    state[k] = v.to(p.dtype)

    # ---------------------------------------------------------------- hooks
    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        epoch = checkpoint.get('meta', {}).get('epoch')
        if epoch is not None:
            self.apply_phase(runner.model, self.phase_of_epoch(int(epoch)))

    def before_train(self, runner) -> None:
        model = runner.model
        before = [p.requires_grad for p in model.parameters()]
        phase = self.phase_of_epoch(runner.epoch)
        self.apply_phase(model, phase, runner.optim_wrapper)
        self._check_distributed(runner, before)
        if self.check_memory:
            self._check_memory(runner)

    def before_train_epoch(self, runner) -> None:
        phase = self.phase_of_epoch(runner.epoch)
        if phase != self.phase:
            print_log(f'SapiensPhaseSwitchHook: epoch {runner.epoch + 1} starts phase '
                      f'{phase}',
                      logger='current',
                      level=logging.INFO)
            self.apply_phase(runner.model, phase, runner.optim_wrapper)

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        if self.phase != 1:
            return
        for _, mod in self._modules(runner.model):
            if not hasattr(mod, 'set_trainable_layers') and mod.training:
                mod.eval()

    # ---------------------------------------------------------------- checks
    def _check_distributed(self, runner, requires_grad_before) -> None:
        model = runner.model
        if not isinstance(model, torch.nn.parallel.DistributedDataParallel):
            return
        after = [p.requires_grad for p in model.parameters()]
        max_epochs = getattr(runner.train_loop, 'max_epochs', 0)
        switches = runner.epoch < self.switch_epoch < max_epochs
        if switches or after != requires_grad_before:
            raise UserValueError(
                'SapiensPhaseSwitchHook: DistributedDataParallel fixes the trained '
                'parameters when it wraps the model, so a phase switch inside a '
                'distributed run would leave unfrozen parameters unsynchronised. Run the '
                'phases as two runs: phase 1 with train_cfg.max_epochs='
                f'{self.switch_epoch}, then phase 2 with load_from=<phase-1 checkpoint>, '
                "custom_hooks.0.switch_epoch=0 (phase 2 from the start)")

    def _check_memory(self, runner) -> None:
        cfg = getattr(runner, 'cfg', None)
        if not torch.cuda.is_available() or cfg is None:
            return
        try:
            plan = mem.plan_from_config(cfg)
        except (UserValueError, KeyError, AttributeError):
            return  # not a Sapiens config: nothing to estimate
        device = torch.cuda.current_device()
        total = torch.cuda.get_device_properties(device).total_memory
        name = torch.cuda.get_device_name(device)
        budget = mem.gpu_budget(total)
        for phase, est in mem.estimate_plan(plan).items():
            if est['total'] <= budget:
                continue
            fits = [r for r in mem.fitting_settings(plan, total) if r['batch_size']]
            fix = ('; '.join(f"route {r['route']!r} at batch {r['batch_size']} x "
                             f"{r['accumulative_counts']}"
                             for r in fits) if fits else 'nothing fits this GPU, even at batch 1')
            hw = plan['input_hw']
            print_log(
                f'SapiensPhaseSwitchHook: {phase} (route {self.phase2["mode"]!r}, batch_size='
                f'{plan["batch_size"]}, input {hw[0]}x{hw[1]}) needs about '
                f'{mem.format_bytes(est["total"])} but {name} has '
                f'{mem.format_bytes(total)}; it will likely run out of memory. What fits: '
                f'{fix} (python tools/check_env.py --config <this config> prints the '
                'settings)',
                logger='current',
                level=logging.WARNING)

"""Two-phase fine-tuning: frozen backbone (phase 1), then (partial) unfreezing."""
import logging
from typing import Optional, Sequence

import torch
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.optim import OptimWrapper
from mmpose.registry import HOOKS

from keypose_ext.utils import sapiens_memory_estimate as mem

_PHASE2_KEYS = {'trainable_layers', 'with_cp'}


def _unwrap(model):
    return model.module if is_model_wrapper(model) else model


@HOOKS.register_module()
class SapiensPhaseSwitchHook(Hook):
    """Freeze ``frozen_modules`` before ``switch_epoch``, unfreeze them from it on.

    Epochs are 0-based as in MMEngine: with ``switch_epoch=10`` epochs 0–9 (the
    seed's "first 10 epochs") train the head only and epoch 10 onwards is phase 2.

    Freezing a module:
    - one with ``set_trainable_layers`` (:class:`SapiensTorchScriptBackbone`) is set to
      ``trainable_layers=0`` and, in phase 2, to ``phase2['trainable_layers']`` (-1 =
      all, N = last N blocks) and ``phase2['with_cp']``; it keeps its frozen part in
      eval mode across ``model.train()`` and runs it without gradients;
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
        phase2 (dict, optional): ``trainable_layers`` (default -1) and ``with_cp``
            for modules with ``set_trainable_layers``.
        check_memory (bool): On a CUDA GPU, warn before training when the estimated
            peak of a phase exceeds the GPU (value and fix in the message).
    """

    priority = 'ABOVE_NORMAL'

    def __init__(self,
                 switch_epoch: int = 10,
                 frozen_modules: Sequence[str] = ('backbone', ),
                 phase2: Optional[dict] = None,
                 check_memory: bool = True):
        if int(switch_epoch) < 0:
            raise ValueError(f'switch_epoch={switch_epoch} must be >= 0')
        phase2 = dict(phase2 or {})
        unknown = set(phase2) - _PHASE2_KEYS
        if unknown:
            raise ValueError(f'SapiensPhaseSwitchHook phase2 has unknown keys '
                             f'{sorted(unknown)}; allowed: {sorted(_PHASE2_KEYS)}')
        if isinstance(frozen_modules, str):
            frozen_modules = [frozen_modules]
        self.switch_epoch = int(switch_epoch)
        self.frozen_modules = list(frozen_modules)
        self.phase2 = phase2
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
                    raise ValueError(f'SapiensPhaseSwitchHook: frozen_modules entry '
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
                if phase == 1:
                    mod.set_trainable_layers(0)
                else:
                    mod.set_trainable_layers(self.phase2.get('trainable_layers', -1),
                                             with_cp=self.phase2.get('with_cp'))
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
            what = ('frozen ' + ', '.join(self.frozen_modules) if phase == 1
                    else 'fine-tuning')
            print_log(f'SapiensPhaseSwitchHook: phase {phase} ({what}): '
                      f'{n_train / 1e6:.2f} M of {n_all / 1e6:.2f} M parameters train',
                      logger='current', level=logging.INFO)
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
                      f'{phase}', logger='current', level=logging.INFO)
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
            raise ValueError(
                'SapiensPhaseSwitchHook: DistributedDataParallel fixes the trained '
                'parameters when it wraps the model, so a phase switch inside a '
                'distributed run would leave unfrozen parameters unsynchronised. Run the '
                'phases as two runs: phase 1 with train_cfg.max_epochs='
                f'{self.switch_epoch}, then phase 2 with load_from=<phase-1 checkpoint>, '
                "custom_hooks.0.switch_epoch=0 and model.backbone.trainable_layers="
                f"{self.phase2.get('trainable_layers', -1)}")

    def _check_memory(self, runner) -> None:
        if not torch.cuda.is_available():
            return
        backbone = None
        for _, mod in self._modules(runner.model):
            if hasattr(mod, 'set_trainable_layers') and hasattr(mod, 'arch_settings'):
                backbone = mod
        if backbone is None:
            return
        try:
            batch = runner.train_dataloader.batch_size
        except Exception:  # noqa: BLE001  (no dataloader: nothing to check)
            return
        device = torch.cuda.current_device()
        total = torch.cuda.get_device_properties(device).total_memory
        name = torch.cuda.get_device_name(device)
        hw = tuple(int(s) * backbone.patch_size for s in backbone.patch_resolution)
        fbytes = 4 if backbone.frozen_dtype in (None, torch.float32) else 2
        n2 = self.phase2.get('trainable_layers', -1)
        cp2 = bool(self.phase2.get('with_cp', backbone.with_cp))
        accum = getattr(runner.optim_wrapper, '_accumulative_counts', 1)
        budget = mem.allocator_budget(total)
        for phase, n, cp in ((1, 0, backbone.with_cp), (2, n2, cp2)):
            if phase == 1 and self.switch_epoch == 0:
                continue
            est = mem.estimate_phase_memory(backbone.arch_settings, hw, batch, n, fbytes,
                                            with_cp=cp)['total']
            if est > budget:
                fits = mem.suggest_settings(backbone.arch_settings, total,
                                            effective_batch=batch * accum,
                                            resolutions=[hw],
                                            frozen_dtype_bytes=fbytes)
                fix = ('e.g. --cfg-options train_dataloader.batch_size='
                       f'{fits[0]["batch_size"]} optim_wrapper.accumulative_counts='
                       f'{fits[0]["accumulative_counts"]} custom_hooks.0.phase2.'
                       f'trainable_layers={fits[0]["trainable_layers"]}' if fits else
                       'use configs/sapiens/stage1_minimal.py (320x240, batch 1)')
                print_log(
                    f'SapiensPhaseSwitchHook: phase {phase} (batch_size={batch}, input '
                    f'{hw[0]}x{hw[1]}, trainable_layers={n}, with_cp={cp}) needs about '
                    f'{mem.format_bytes(est)} but {name} leaves '
                    f'{mem.format_bytes(budget)} to PyTorch; it will likely run out of '
                    f'memory. Fix: {fix} (see python tools/check_env.py)',
                    logger='current', level=logging.WARNING)

"""Layer-wise lr decay over *all* parameters, so a phase switch keeps the optimizer."""
import logging
from typing import List

import torch.nn as nn
from mmengine.logging import print_log
from mmengine.optim import DefaultOptimWrapperConstructor
from mmpose.registry import OPTIM_WRAPPER_CONSTRUCTORS

from keypose_ext.utils.errors import UserValueError

# Name parts FSDP and activation-checkpoint wrappers insert (use_orig_params=True).
_WRAPPER_PARTS = ('_fsdp_wrapped_module.', '_checkpoint_wrapped_module.')


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class SapiensLayerDecayOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """Param groups by ViT depth with ``lr = base_lr * decay ** (max_depth - depth)``.

    Unlike mmpose's ``LayerDecayOptimWrapperConstructor`` and mmpretrain's
    ``LearningRateDecayOptimWrapperConstructor`` (both skip ``requires_grad=False``
    parameters), every parameter is put in a group, frozen or not. A backbone frozen
    for phase 1 and unfrozen by :class:`SapiensPhaseSwitchHook` is therefore already
    in the optimizer: AdamW skips parameters whose ``grad`` is None, so they take no
    step and hold no state until they train, and the head's AdamW state survives the
    switch (and a resume).

    Depth comes from ``model.backbone.get_layer_depth(name, 'backbone.')``
    (mmpretrain ViTs): patch/position embedding 0, block ``i`` → ``i + 1`` (its LoRA
    adapters too), final norm and head → ``num_layers + 1`` (scale 1). Names inside an
    FSDP-wrapped model
    (``configs/sapiens/td-hm_sapiens-1b-fsdp-offload_1xb2-100e_coco-384x288.py``) are read
    without the wrappers' name parts.

    ``paramwise_cfg``:
        - ``layer_decay_rate`` (float): per-block factor, e.g. 0.85 (Sapiens' value).
        - ``no_decay_names`` (list[str]): substrings of names without weight decay
          (default ``pos_embed``, ``cls_token``); 1-D tensors and biases never decay.
    """

    def add_params(self, params: List[dict], module: nn.Module, **kwargs) -> None:
        rate = float(self.paramwise_cfg.get('layer_decay_rate', 1.0))
        if not 0 < rate <= 1:
            raise UserValueError(f'paramwise_cfg.layer_decay_rate={rate} must be in (0, 1]')
        no_decay = tuple(self.paramwise_cfg.get('no_decay_names', ('pos_embed', 'cls_token')))
        backbone = getattr(getattr(module, 'module', module), 'backbone', None)
        if backbone is None or not hasattr(backbone, 'get_layer_depth'):
            raise UserValueError(
                'SapiensLayerDecayOptimWrapperConstructor needs model.backbone with '
                'get_layer_depth() (a ViT such as SapiensTorchScriptBackbone); use '
                "optim_wrapper.constructor='DefaultOptimWrapperConstructor' otherwise")
        if self.base_lr is None:
            raise UserValueError('optim_wrapper.optimizer needs an lr for layer-wise decay')
        base_wd = self.base_wd or 0.
        groups = {}
        for name, param in module.named_parameters():
            for part in _WRAPPER_PARTS:
                name = name.replace(part, '')
            depth, max_depth = backbone.get_layer_depth(name, 'backbone.')
            decay = not (param.ndim <= 1 or name.endswith('.bias') or any(k in name
                                                                          for k in no_decay))
            key = (depth, decay)
            if key not in groups:
                scale = rate**(max_depth - 1 - depth)
                groups[key] = dict(
                    params=[],
                    lr=self.base_lr * scale,
                    lr_scale=scale,
                    weight_decay=base_wd if decay else 0.,
                    group_name=f'depth_{depth}_{"decay" if decay else "no_decay"}')
            groups[key]['params'].append(param)
        ordered = [groups[k] for k in sorted(groups)]
        params.extend(ordered)
        n_frozen = sum(p.numel() for g in ordered for p in g['params'] if not p.requires_grad)
        print_log(
            f'SapiensLayerDecayOptimWrapperConstructor: {len(ordered)} groups, '
            f'layer_decay_rate={rate}, lr scale {min(g["lr_scale"] for g in ordered):.3g}'
            f'..1; {n_frozen / 1e6:.1f} M currently frozen parameters included (they '
            'train when unfrozen)',
            logger='current',
            level=logging.INFO)

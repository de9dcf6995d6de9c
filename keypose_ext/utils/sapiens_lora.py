"""Low-rank adapters on a ViT's attention and MLP layers (mmpretrain's ``LoRALinear``),
and their merging into plain weights.

A wrapped layer's state-dict entries are ``X.original_layer.{weight,bias}``,
``X.lora_down.weight`` ``(r, in)``, ``X.lora_up.weight`` ``(out, r)`` and
``X.lora_scaling`` (``alpha / r``); merged, they become the plain ``X.weight`` =
``W + scaling * up @ down`` and ``X.bias`` of an ``nn.Linear``, which any ViT config
without adapters loads.
"""
from typing import Dict, List, Sequence

import torch
import torch.nn as nn
from mmpretrain.models.peft.lora import LoRALinear

# The linear layers of mmpretrain's TransformerEncoderLayer: attention and MLP.
DEFAULT_TARGETS = ('attn.qkv', 'attn.proj', 'ffn.layers.0.0', 'ffn.layers.1')
_BASE = '.original_layer.'


class SapiensLoRALinear(LoRALinear):
    """mmpretrain's ``LoRALinear`` whose base layer may be stored in a lower precision
    than the adapters (fp16 frozen weights, fp32 adapters), with the scaling kept in
    the state dict so a checkpoint can be merged without its config.

    Shapes: ``(..., in)`` → ``(..., out)`` in the dtype of the input.
    """

    def __init__(self, original_layer: nn.Linear, alpha: float, rank: int, drop_rate: float = 0.):
        super().__init__(original_layer, alpha, rank, drop_rate)
        self.register_buffer('lora_scaling', torch.tensor(float(self.scaling)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        base = self.original_layer(x)
        down = self.lora_down.weight
        delta = self.lora_up(self.lora_down(self.lora_dropout(x.to(down.dtype))))
        return base + (delta * self.scaling).to(base.dtype)


def _is_target(name: str, targets: Sequence[str]) -> bool:
    return any(name == t or name.endswith('.' + t) for t in targets)


def add_lora(root: nn.Module,
             rank: int,
             alpha: float,
             drop_rate: float = 0.,
             targets: Sequence[str] = DEFAULT_TARGETS) -> List[str]:
    """Wrap every ``nn.Linear`` of ``root`` whose name ends with a target; returns the
    wrapped names. The adapters start at zero (``lora_up = 0``): the function of
    ``root`` is unchanged."""
    names = [
        n for n, m in root.named_modules()
        if isinstance(m, nn.Linear) and _is_target(n, tuple(targets))
    ]
    for name in names:
        parent_name, _, leaf = name.rpartition('.')
        parent = root.get_submodule(parent_name)
        setattr(parent, leaf, SapiensLoRALinear(getattr(parent, leaf), alpha, rank, drop_rate))
    return names


def lora_layers(root: nn.Module) -> Dict[str, SapiensLoRALinear]:
    return {n: m for n, m in root.named_modules() if isinstance(m, SapiensLoRALinear)}


def lora_parameters(root: nn.Module) -> List[nn.Parameter]:
    return [p for m in lora_layers(root).values() for p in (m.lora_down.weight, m.lora_up.weight)]


def strip_lora(root: nn.Module) -> nn.Module:
    """Replace every adapter wrapper by its base layer (adapters discarded); returns root."""
    for name in list(lora_layers(root)):
        parent_name, _, leaf = name.rpartition('.')
        parent = root.get_submodule(parent_name) if parent_name else root
        setattr(parent, leaf, getattr(parent, leaf).original_layer)
    return root


def merge_lora_state_dict(state_dict: Dict[str, torch.Tensor],
                          prefix: str = '') -> Dict[str, torch.Tensor]:
    """Merge the adapters of the keys under ``prefix`` into plain weights, in place.

    ``X.original_layer.weight`` becomes ``X.weight`` (float32, so small adapter updates
    are not rounded away by an fp16 base); the adapter entries are removed.
    Returns ``state_dict``.
    """
    for key in [k for k in state_dict if k.startswith(prefix) and _BASE in k]:
        plain = key.replace(_BASE, '.')
        value = state_dict.pop(key)
        if key.endswith(_BASE + 'weight'):
            layer = key[:-len('original_layer.weight')]
            up = state_dict.pop(layer + 'lora_up.weight').float()
            down = state_dict.pop(layer + 'lora_down.weight').float()
            scaling = state_dict.pop(layer + 'lora_scaling').float()
            value = value.float() + scaling * (up.to(value.device) @ down.to(value.device))
        state_dict[plain] = value
    return state_dict


def plain_to_lora_state_dict(state_dict: Dict[str, torch.Tensor], prefix: str,
                             layers: Dict[str, SapiensLoRALinear]) -> None:
    """Give a plain (or merged) state dict the layout of a model with adapters, in place:
    ``X.weight`` → ``X.original_layer.weight`` and zero adapters (the same function)."""
    for name, layer in layers.items():
        head = f'{prefix}{name}.'
        if head + 'weight' not in state_dict:
            continue
        for leaf in ('weight', 'bias'):
            if head + leaf in state_dict:
                state_dict[head + 'original_layer.' + leaf] = state_dict.pop(head + leaf)
        state_dict.setdefault(head + 'lora_down.weight', layer.lora_down.weight.detach())
        state_dict.setdefault(head + 'lora_up.weight',
                              torch.zeros_like(layer.lora_up.weight, device='cpu'))
        state_dict.setdefault(head + 'lora_scaling', layer.lora_scaling.detach())

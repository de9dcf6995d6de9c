"""The Sapiens ViT sizes and phase-2 routes, shared by the backbone, the phase-switch
hook, the TorchScript reader and the memory estimate (one table each, no torch import)."""
from typing import Dict, Optional, Tuple, Union

from .errors import UserValueError

# facebookresearch/sapiens, mmpretrain ``arch_zoo``: patch 16, qkv bias, final LayerNorm.
SAPIENS_ARCHS: Dict[str, dict] = {
    'sapiens_0.3b': dict(embed_dims=1024, num_layers=24, num_heads=16, feedforward_channels=4096),
    'sapiens_0.6b': dict(embed_dims=1280, num_layers=32, num_heads=16, feedforward_channels=5120),
    'sapiens_1b': dict(embed_dims=1536, num_layers=40, num_heads=24, feedforward_channels=6144),
    'sapiens_2b': dict(embed_dims=1920, num_layers=48, num_heads=32, feedforward_channels=7680),
}
ARCH_KEYS = ('embed_dims', 'num_layers', 'num_heads', 'feedforward_channels')


def resolve_sapiens_arch(arch: Union[str, dict]) -> Tuple[str, dict]:
    """Return ``(name, settings)`` for a Sapiens arch name or a custom arch dict.

    Names accept the ``sapiens_`` prefix or not (``'1b'`` == ``'sapiens_1b'``).
    A dict needs ``embed_dims, num_layers, num_heads, feedforward_channels``.
    """
    if isinstance(arch, str):
        key = arch.lower()
        key = key if key.startswith('sapiens_') else f'sapiens_{key}'
        if key not in SAPIENS_ARCHS:
            raise UserValueError(
                f'unknown Sapiens arch {arch!r}; choose one of '
                f'{sorted(SAPIENS_ARCHS)} or pass a dict with keys {list(ARCH_KEYS)}')
        return key, dict(SAPIENS_ARCHS[key])
    if isinstance(arch, dict):
        missing = [k for k in ARCH_KEYS if k not in arch]
        if missing:
            raise UserValueError(f'custom arch dict {arch} lacks {missing}; it needs '
                                 f'{list(ARCH_KEYS)}')
        if arch['embed_dims'] % arch['num_heads']:
            raise UserValueError(f'arch embed_dims={arch["embed_dims"]} is not divisible by '
                                 f'num_heads={arch["num_heads"]}')
        return 'custom', {k: int(arch[k]) for k in ARCH_KEYS}
    raise UserValueError(f'arch must be a Sapiens arch name or a dict, got {type(arch)}')


def sapiens_arch_name(embed_dims: int, num_layers: int) -> Optional[str]:
    """The Sapiens arch with these sizes, or None."""
    for name, a in SAPIENS_ARCHS.items():
        if a['embed_dims'] == embed_dims and a['num_layers'] == num_layers:
            return name
    return None


# Phase-2 routes of SapiensPhaseSwitchHook (``phase2=dict(mode=...)``):
#   'lora'        low-rank adapters on every block's attention and MLP + final norm;
#   'last_blocks' the last ``trainable_layers`` blocks + final norm;
#   'full'        every parameter (on a 4 GB GPU only with FSDP CPU offload).
PHASE2_MODES = ('lora', 'last_blocks', 'full')
PHASE2_KEYS = ('mode', 'trainable_layers', 'with_cp')


def resolve_phase2(phase2: Optional[dict]) -> dict:
    """``phase2`` of the hook → ``dict(mode, trainable_layers, with_cp)``.

    Without ``mode``: ``trainable_layers`` N > 0 means ``'last_blocks'``, -1 or absent
    ``'full'``. ``with_cp`` None keeps the backbone's setting.
    """
    phase2 = dict(phase2 or {})
    unknown = sorted(set(phase2) - set(PHASE2_KEYS))
    if unknown:
        raise UserValueError(f'SapiensPhaseSwitchHook phase2 has unknown keys {unknown}; '
                             f'allowed: {list(PHASE2_KEYS)}')
    n = phase2.get('trainable_layers')
    mode = phase2.get('mode') or ('full' if n in (None, -1) else 'last_blocks')
    if mode not in PHASE2_MODES:
        raise UserValueError(f'SapiensPhaseSwitchHook phase2.mode={mode!r}; choose one of '
                             f'{list(PHASE2_MODES)}')
    if mode == 'last_blocks' and not (isinstance(n, int) and n >= 1):
        raise UserValueError("phase2.mode='last_blocks' needs phase2.trainable_layers=N "
                             f'(N >= 1 blocks), got {n!r}')
    n = {'full': -1, 'lora': 0}.get(mode, n)
    return dict(mode=mode, trainable_layers=n, with_cp=phase2.get('with_cp'))

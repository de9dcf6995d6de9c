"""Read a Sapiens TorchScript pretrain file into the layout of mmpretrain's ViT.

Meta's files (e.g. ``sapiens_1b_epoch_173_torchscript.pt2``) are ``torch.jit.trace`` of
the whole MAE model at 1024×1024 (sapiens ``pretrain/tools/deployment/
pytorch2torchscript.py``): ``backbone.*`` is an mmpretrain ``MAEViT`` with a cls token
(``pos_embed`` ``(1, 1 + 64·64, C)``, the cls position first), ``neck.*`` the MAE
decoder, ``data_preprocessor.*`` its mean/std buffers; the traced forward runs the
backbone only and returns a 1-tuple ``(B, C, 64, 64)``.

Steps, each with a user error naming the file and the fix:

1. :func:`detect_checkpoint_format` / :func:`load_torchscript_file`: TorchScript
   (any suffix) vs a torch.export archive, a ``torch.save`` state dict, a Git LFS
   pointer, a truncated file;
2. :func:`inspect_encoder`: where the ViT is (``<prefix>patch_embed.projection.weight``)
   and whether its sizes match the arch;
3. :func:`encoder_state_dict`: the encoder's tensors without the prefix, the cls token
   dropped from ``pos_embed`` as mmpretrain's ``VisionTransformer`` does for
   ``with_cls_token=False`` (its load hook then resizes the grid);
4. :func:`verify_against_trace`: block 0, the final norm and the patch conv of the trace
   and of our modules on the same random input — what weight shapes cannot show
   (heads, LayerNorm eps, conv padding).
"""
import logging
import math
import os.path as osp
import re
import warnings
import zipfile
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn as nn
from mmengine.logging import print_log

from .errors import UserFileNotFoundError, UserValueError
from .sapiens_archs import sapiens_arch_name

DOWNLOAD_HINT = ('download it with `python tools/download_pretrained.py --arch {arch}` '
                 'or set model.backbone.checkpoint to the right path')
PROBES = ('layers.0', 'ln1', 'patch_embed.projection')


def detect_checkpoint_format(path: str) -> str:
    """Say what a weights file is, without loading it.

    Returns one of ``'torchscript'`` (``torch.jit.save``), ``'torch_export'``
    (``torch.export.save`` .pt2 archive), ``'torch_save'`` (``torch.save`` zip),
    ``'git_lfs_pointer'``, ``'not_zip'``.
    """
    if not osp.isfile(path):
        raise UserFileNotFoundError(f'weights file {path!r} not found')
    if not zipfile.is_zipfile(path):
        with open(path, 'rb') as f:
            head = f.read(64)
        return 'git_lfs_pointer' if head.startswith(b'version https://git-lfs') else 'not_zip'
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
    tails = {n.split('/', 1)[1] if '/' in n else n for n in names}
    if 'constants.pkl' in tails and any(t.startswith('code/') for t in tails):
        return 'torchscript'
    if 'archive_format' in tails or any(t.startswith('models/') for t in tails):
        return 'torch_export'
    if 'data.pkl' in tails:
        return 'torch_save'
    return 'not_zip'


def load_torchscript_file(path: str, arch_hint: str = 'sapiens_1b') -> torch.jit.ScriptModule:
    """``torch.jit.load`` on the CPU, with one clear error for anything else."""
    hint = DOWNLOAD_HINT.format(arch=arch_hint.replace('sapiens_', ''))
    if not osp.isfile(path):
        raise UserFileNotFoundError(f'Sapiens TorchScript file {path!r} not found; {hint}')
    kind = detect_checkpoint_format(path)
    if kind == 'git_lfs_pointer':
        raise UserValueError(f'{path!r} is a Git LFS pointer (a few bytes of text), not the '
                             f'weights: the download skipped LFS; {hint}')
    if kind == 'torch_export':
        raise UserValueError(
            f'{path!r} is a torch.export (.pt2) archive, not TorchScript: '
            'torch.jit.load cannot read it. Use the TorchScript release '
            '(facebook/sapiens-pretrain-<arch>-torchscript) or re-save the model with '
            'torch.jit.trace(model, torch.randn(1, 3, 1024, 1024)).save(path)')
    if kind == 'torch_save':
        raise UserValueError(
            f'{path!r} is a torch.save checkpoint (state dict), not TorchScript: load it '
            "with model.backbone.init_cfg=dict(type='Pretrained', checkpoint=...) on "
            "mmpretrain's VisionTransformer, or pass the *_torchscript.pt2 file here")
    if kind != 'torchscript':
        raise UserValueError(f'{path!r} is not a TorchScript file (not a torch.jit.save zip '
                             f'archive; size {osp.getsize(path)} bytes); {hint}')
    with warnings.catch_warnings():
        # torch>=2.9 deprecates TorchScript; loading still works and is what we need.
        warnings.simplefilter('ignore', DeprecationWarning)
        warnings.simplefilter('ignore', FutureWarning)
        try:
            return torch.jit.load(path, map_location='cpu')
        except RuntimeError as e:
            raise UserValueError(f'{path!r} looks like TorchScript but torch.jit.load failed '
                                 f'(truncated download? {hint}): {e}') from None


def submodule(module, path: str):
    for part in path.split('.'):
        if part:
            module = getattr(module, part)
    return module


def _traced_conv(conv) -> Optional[Tuple[List[int], List[int]]]:
    """``(stride, padding)`` of a traced ``nn.Conv2d``, read from its TorchScript code
    (a trace keeps no module attributes)."""
    try:
        code = conv.code
    except Exception:  # noqa: BLE001  (not a scripted submodule)
        return None
    m = re.search(r'_convolution\([^,]+, [^,]+, [^,]+, \[(\d+), (\d+)\], \[(\d+), (\d+)\]', code)
    if m is None:
        return None
    v = [int(g) for g in m.groups()]
    return v[:2], v[2:]


def inspect_encoder(path: str, ts, file_sd: Dict[str, torch.Tensor], arch_name: str,
                    expected: dict) -> dict:
    """Find the ViT in the trace and check it against ``expected``.

    Args:
        expected: ``embed_dims, num_layers, feedforward_channels, patch_size``.

    Returns:
        dict: ``prefix, n_extra`` (1 with a cls token), ``grid`` (traced patch grid),
        ``traced_size`` (H, W), ``conv`` (stride, padding or None) and the sizes found.
    """
    key = next((k for k in file_sd if k.endswith('patch_embed.projection.weight')), None)
    if key is None:
        raise UserValueError(
            f'{path!r} holds no ViT patch embedding (*patch_embed.projection.weight); '
            f'first tensors: {list(file_sd)[:5]}. Is it a Sapiens pretrain file?')
    prefix = key[:-len('patch_embed.projection.weight')]
    w = file_sd[key]
    layer_ids = {
        int(m.group(1))
        for k in file_sd
        for m in [re.match(re.escape(prefix) + r'layers\.(\d+)\.', k)] if m
    }
    fc1 = file_sd.get(prefix + 'layers.0.ffn.layers.0.0.weight')
    pos = file_sd.get(prefix + 'pos_embed')
    if pos is None:
        raise UserValueError(f'{path!r} has no {prefix}pos_embed')
    found = dict(
        embed_dims=int(w.shape[0]),
        num_layers=len(layer_ids),
        feedforward_channels=None if fc1 is None else int(fc1.shape[0]),
        patch_size=int(w.shape[-1]))
    diff = {k: (expected[k], found[k]) for k in found if expected[k] != found[k]}
    if diff:
        file_arch = sapiens_arch_name(found['embed_dims'], found['num_layers'])
        fix = (f"set model.backbone.arch='{file_arch}'"
               if file_arch else 'pass arch=dict(embed_dims=..., num_layers=..., num_heads=..., '
               'feedforward_channels=...) matching the file')
        raise UserValueError(f'{path!r} is a different ViT than arch={arch_name!r}: ' +
                             ', '.join(f'{k} expected {e}, found {f}'
                                       for k, (e, f) in diff.items()) + f'; {fix}')
    n_extra = 1 if (prefix + 'cls_token') in file_sd else 0
    n_patches = pos.shape[1] - n_extra
    side = int(round(math.sqrt(n_patches)))
    if side * side != n_patches:
        raise UserValueError(f'{path!r}: {prefix}pos_embed has {n_patches} patch tokens, '
                             'not a square grid; cannot tell the traced input size')
    patch = found['patch_size']
    return dict(
        prefix=prefix,
        n_extra=n_extra,
        grid=(side, side),
        traced_size=(side * patch, side * patch),
        conv=_traced_conv(submodule(ts, prefix + 'patch_embed.projection')),
        **found)


def encoder_state_dict(file_sd: Dict[str, torch.Tensor],
                       info: dict) -> Tuple[Dict[str, torch.Tensor], List[str]]:
    """The encoder's tensors without the prefix, and the names of the ignored ones.

    The cls token and its position (the first ``pos_embed`` row) are dropped, as
    mmpretrain's ``VisionTransformer`` drops them for ``with_cls_token=False``; the MAE
    decoder, mask token and preprocessor buffers outside the encoder are ignored.
    Returns ``(state_dict, ignored_keys)``; ``pos_embed`` is ``(1, G·G, C)``.
    """
    prefix = info['prefix']
    sd = {k[len(prefix):]: v for k, v in file_sd.items() if k.startswith(prefix)}
    sd.pop('cls_token', None)
    sd['pos_embed'] = sd['pos_embed'][:, info['n_extra']:]
    ignored = sorted(k for k in file_sd if not k.startswith(prefix) or k == prefix + 'cls_token')
    return sd, ignored


def verify_against_trace(path: str,
                         ts,
                         encoder_sd: Dict[str, torch.Tensor],
                         info: dict,
                         modules: Dict[str, nn.Module],
                         num_heads: int,
                         check_conv: bool = True) -> None:
    """Run the trace's and our ``modules`` (plain float32 CPU copies, loaded here with the
    file's weights) on one random input each; a difference names the likely cause.

    Args:
        modules: ``{'layers.0': ..., 'ln1': ..., 'patch_embed.projection': ...}``.
        check_conv: False when the user set another patch padding on purpose.
    """
    prefix = info['prefix']
    conv = modules.get('patch_embed.projection')
    if check_conv and info['conv'] is not None and conv is not None:
        stride, padding = info['conv']
        if list(conv.stride) != stride or list(conv.padding) != padding:
            raise UserValueError(
                f'{path!r}: the traced patch conv has stride {stride}, padding {padding}; '
                f'this model has stride {list(conv.stride)}, padding {list(conv.padding)}; '
                f'set model.backbone.patch_cfg=dict(padding={padding[0]}) and '
                f'patch_size={stride[0]}')
    gen = torch.Generator().manual_seed(0)
    dims, patch = info['embed_dims'], info['patch_size']
    for name, mine in modules.items():
        if name == 'patch_embed.projection':
            if not check_conv:
                continue
            x = torch.randn(1, 3, 2 * patch, 2 * patch, generator=gen)
        else:
            x = torch.randn(1, 8, dims, generator=gen)
        try:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter('ignore')
                ref = submodule(ts, prefix + name)(x)
        except Exception as e:  # noqa: BLE001  (a trace may not expose submodules)
            print_log(
                f'SapiensTorchScriptBackbone: could not probe {prefix}{name} of the '
                f'trace ({type(e).__name__}); skipped that check',
                logger='current',
                level=logging.WARNING)
            continue
        mine.load_state_dict({k: encoder_sd[f'{name}.{k}'] for k in mine.state_dict()})
        with torch.no_grad():
            out = mine.eval()(x)
        err = (out - ref).abs().max().item() if out.shape == ref.shape else math.inf
        if err > 1e-3 * max(1.0, ref.abs().max().item()):
            hint = (f'num_heads (this arch: {num_heads}) or the LayerNorm eps' if name
                    != 'patch_embed.projection' else 'the conv padding (model.backbone.patch_cfg)')
            raise UserValueError(
                f'{path!r}: {prefix}{name} of the trace and of the ViT differ on the same '
                f'input (max abs diff {err:.3g}); check {hint}')

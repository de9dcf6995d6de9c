"""Sapiens ViT backbone whose weights come from a Sapiens TorchScript pretrain file.

Meta publishes the Sapiens MAE encoders as ``torch.jit.trace`` files (e.g.
``sapiens_1b_epoch_173_torchscript.pt2``, traced at 1024×1024; forward returns a
1-tuple ``(B, 1536, 64, 64)`` for 1b). A trace fixes its position embedding to the
64×64 grid it was traced on, so it cannot run at 384×288. This backbone is an eager
mmpretrain ``VisionTransformer`` of the matching arch that takes the trace's
parameters, resizes the position embedding to the training grid, and keeps the
trace itself for inputs of exactly the traced size.
"""
import contextlib
import logging
import math
import os
import os.path as osp
import re
import warnings
import zipfile
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmengine.logging import print_log
from mmpose.registry import MODELS
from mmpretrain.models.backbones import VisionTransformer
from mmpretrain.models.utils import resize_pos_embed
from torch.func import functional_call
from torch.utils.checkpoint import checkpoint as activation_checkpoint

# The Sapiens archs (facebookresearch/sapiens, mmpretrain ``arch_zoo``): patch 16,
# qkv bias, final LayerNorm, no cls token in the pose fine-tuning configs.
SAPIENS_ARCHS: Dict[str, dict] = {
    'sapiens_0.3b': dict(embed_dims=1024, num_layers=24, num_heads=16,
                         feedforward_channels=4096),
    'sapiens_0.6b': dict(embed_dims=1280, num_layers=32, num_heads=16,
                         feedforward_channels=5120),
    'sapiens_1b': dict(embed_dims=1536, num_layers=40, num_heads=24,
                       feedforward_channels=6144),
    'sapiens_2b': dict(embed_dims=1920, num_layers=48, num_heads=32,
                       feedforward_channels=7680),
}
_ARCH_KEYS = ('embed_dims', 'num_layers', 'num_heads', 'feedforward_channels')
_DTYPES = {None: None, 'float32': torch.float32, 'fp32': torch.float32,
           'float16': torch.float16, 'fp16': torch.float16, 'half': torch.float16,
           'bfloat16': torch.bfloat16, 'bf16': torch.bfloat16}
_DOWNLOAD_HINT = ('download it with `python tools/download_pretrained.py --arch {arch}` '
                  'or set model.backbone.checkpoint to the right path')


def resolve_sapiens_arch(arch: Union[str, dict]) -> Tuple[str, dict]:
    """Return ``(name, settings)`` for a Sapiens arch name or a custom arch dict.

    Names accept the ``sapiens_`` prefix or not (``'1b'`` == ``'sapiens_1b'``).
    A dict needs ``embed_dims, num_layers, num_heads, feedforward_channels``.
    """
    if isinstance(arch, str):
        key = arch.lower()
        key = key if key.startswith('sapiens_') else f'sapiens_{key}'
        if key not in SAPIENS_ARCHS:
            raise ValueError(
                f'unknown Sapiens arch {arch!r}; choose one of '
                f'{sorted(SAPIENS_ARCHS)} or pass a dict with keys {list(_ARCH_KEYS)}')
        return key, dict(SAPIENS_ARCHS[key])
    if isinstance(arch, dict):
        missing = [k for k in _ARCH_KEYS if k not in arch]
        if missing:
            raise ValueError(f'custom arch dict {arch} lacks {missing}; it needs '
                             f'{list(_ARCH_KEYS)}')
        if arch['embed_dims'] % arch['num_heads']:
            raise ValueError(f'arch embed_dims={arch["embed_dims"]} is not divisible by '
                             f'num_heads={arch["num_heads"]}')
        return 'custom', {k: int(arch[k]) for k in _ARCH_KEYS}
    raise ValueError(f'arch must be a Sapiens arch name or a dict, got {type(arch)}')


def sapiens_arch_name(embed_dims: int, num_layers: int) -> Optional[str]:
    """The Sapiens arch with these sizes, or None."""
    for name, a in SAPIENS_ARCHS.items():
        if a['embed_dims'] == embed_dims and a['num_layers'] == num_layers:
            return name
    return None


def detect_checkpoint_format(path: str) -> str:
    """Say what a weights file is, without loading it.

    Returns one of ``'torchscript'`` (``torch.jit.save``), ``'torch_export'``
    (``torch.export.save`` .pt2 archive), ``'torch_save'`` (``torch.save`` zip),
    ``'git_lfs_pointer'``, ``'not_zip'``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'weights file {path!r} not found')
    if not zipfile.is_zipfile(path):
        with open(path, 'rb') as f:
            head = f.read(64)
        if head.startswith(b'version https://git-lfs'):
            return 'git_lfs_pointer'
        return 'not_zip'
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
    """``torch.jit.load`` a TorchScript file on CPU, with clear errors otherwise.

    Either suffix (``.pt2`` as Meta names it, ``.pt``, ...) is accepted; what counts
    is the content.
    """
    hint = _DOWNLOAD_HINT.format(arch=arch_hint.replace('sapiens_', ''))
    if not osp.isfile(path):
        raise FileNotFoundError(f'Sapiens TorchScript file {path!r} not found; {hint}')
    kind = detect_checkpoint_format(path)
    if kind == 'git_lfs_pointer':
        raise ValueError(f'{path!r} is a Git LFS pointer (a few bytes of text), not the '
                         f'weights: the download skipped LFS; {hint}')
    if kind == 'torch_export':
        raise ValueError(
            f'{path!r} is a torch.export (.pt2) archive, not TorchScript: '
            'torch.jit.load cannot read it. Use the TorchScript release '
            '(facebook/sapiens-pretrain-<arch>-torchscript) or re-save the model with '
            'torch.jit.trace(model, torch.randn(1, 3, 1024, 1024)).save(path)')
    if kind == 'torch_save':
        raise ValueError(
            f'{path!r} is a torch.save checkpoint (state dict), not TorchScript: load it '
            "with model.backbone.init_cfg=dict(type='Pretrained', checkpoint=...) on "
            "mmpretrain's VisionTransformer, or pass the *_torchscript.pt2 file here")
    if kind != 'torchscript':
        raise ValueError(f'{path!r} is not a TorchScript file (not a torch.jit.save zip '
                         f'archive; size {os.path.getsize(path)} bytes); {hint}')
    with warnings.catch_warnings():
        # torch>=2.9 deprecates TorchScript; loading still works and is what we need.
        warnings.simplefilter('ignore', DeprecationWarning)
        warnings.simplefilter('ignore', FutureWarning)
        try:
            return torch.jit.load(path, map_location='cpu')
        except RuntimeError as e:
            raise ValueError(f'{path!r} looks like TorchScript but torch.jit.load failed '
                             f'(truncated download? {hint}): {e}') from None


def _submodule(module, path: str):
    for part in path.split('.'):
        if part:
            module = getattr(module, part)
    return module


def _parse_ts_conv(conv) -> Optional[Tuple[list, list]]:
    """``(stride, padding)`` of a traced ``nn.Conv2d``, read from its code."""
    try:
        code = conv.code
    except Exception:  # noqa: BLE001  (not a scripted submodule)
        return None
    m = re.search(r'_convolution\([^,]+, [^,]+, [^,]+, \[(\d+), (\d+)\], \[(\d+), (\d+)\]',
                  code)
    if m is None:
        return None
    v = [int(g) for g in m.groups()]
    return v[:2], v[2:]


@MODELS.register_module()
class SapiensTorchScriptBackbone(VisionTransformer):
    """Sapiens ViT (mmpretrain ``VisionTransformer``) initialised from a TorchScript file.

    The weights are read in :meth:`init_weights` (the MMEngine convention: the runner
    calls it before training; ``tools/test.py`` loads a trained checkpoint instead and
    never reads the pretrain file):

    - the file must be TorchScript (``torch.jit.save``); a torch.export archive, a
      ``torch.save`` state dict, a Git LFS pointer or a missing file is a clear error;
    - its ``(…).patch_embed.projection.weight``, ``layers.N.*``, ``ln1.*`` and
      ``pos_embed`` must match the arch (embed dims, layers, FFN width, patch size);
      layer 0, the patch embedding and the final norm are also run once on a small
      random input in both the trace and the eager model, which catches what weights
      cannot show (number of heads, LayerNorm eps, conv padding);
    - the ``(1, G*G, C)`` position embedding is resized (bicubic) from the traced
      G×G grid to ``img_size / patch_size``; a cls token, mask token or MAE decoder in
      the file is ignored (as Sapiens' own pose configs do, ``with_cls_token=False``).

    With ``use_torchscript=True`` the trace is kept and runs inputs of exactly its
    traced size when no gradient is needed (frozen or eval), sharing every parameter
    with the eager model (no extra memory; a resized/fine-tuned position embedding
    is mapped back to the traced grid when it changes).

    Trainable state (what :class:`SapiensPhaseSwitchHook` switches):

    - ``trainable_layers=0``: fully frozen (phase 1): ``requires_grad=False``, eval
      mode kept across ``model.train()``, forward under ``torch.no_grad()``, and the
      weights stored in ``frozen_dtype`` (``'float16'`` halves the 4.5 GB of fp32
      Sapiens-1B weights so they fit a 4 GB GPU);
    - ``trainable_layers=N``: the patch embedding, position embedding and the first
      ``num_layers - N`` blocks stay frozen (same rules), the last ``N`` blocks and the
      final norm train in float32 (AMP casts them per op);
    - ``trainable_layers=-1``: everything trains (the A100 setting).

    Parameter objects never change (only their ``.data`` dtype), so an optimizer built
    over all parameters at the start stays valid across switches.

    Args:
        checkpoint (str, optional): TorchScript pretrain file (``.pt2`` or any suffix).
            ``None`` keeps a random init (tests, memory benchmarks).
        arch (str | dict): ``'sapiens_0.3b' | 'sapiens_0.6b' | 'sapiens_1b' |
            'sapiens_2b'`` (or without the prefix), or a dict with ``embed_dims,
            num_layers, num_heads, feedforward_channels`` (tiny test models).
        img_size (tuple[int, int]): Training input ``(H, W)``; multiples of
            ``patch_size``. Defaults to ``(384, 288)``.
        patch_size (int): Defaults to 16.
        trainable_layers (int): See above. Defaults to -1.
        frozen_dtype (str, optional): ``'float16' | 'bfloat16' | None`` (float32) for
            frozen parameters.
        with_cp (bool): Activation checkpointing of the trainable blocks.
        use_torchscript (bool): Keep the trace for inputs of the traced size.
        verify_on_load (bool): Run the numerical checks described above.
        drop_path_rate (float): Stochastic depth of the blocks. Defaults to 0.
        patch_cfg (dict, optional): mmcv ``PatchEmbed`` overrides (e.g. ``padding``);
            by default the trace's conv padding is used.
        out_indices, interpolate_mode, init_cfg: as in mmpretrain.

    Shapes: input ``(B, 3, H, W)`` → tuple of ``(B, C, H/16, W/16)`` float32.
    """

    def __init__(self,
                 checkpoint: Optional[str] = None,
                 arch: Union[str, dict] = 'sapiens_1b',
                 img_size: Sequence[int] = (384, 288),
                 patch_size: int = 16,
                 trainable_layers: int = -1,
                 frozen_dtype: Optional[str] = None,
                 with_cp: bool = False,
                 use_torchscript: bool = True,
                 verify_on_load: bool = True,
                 drop_path_rate: float = 0.,
                 patch_cfg: Optional[dict] = None,
                 out_indices: Union[int, Sequence[int]] = -1,
                 interpolate_mode: str = 'bicubic',
                 init_cfg: Optional[dict] = None):
        self.arch_name, arch_settings = resolve_sapiens_arch(arch)
        img_size = tuple(int(s) for s in (img_size if isinstance(img_size, (list, tuple))
                                           else (img_size, img_size)))
        if len(img_size) != 2 or any(s % patch_size or s <= 0 for s in img_size):
            raise ValueError(
                f'img_size {img_size} (H, W) must be positive multiples of patch_size='
                f'{patch_size}; e.g. {self._nearest_multiples(img_size, patch_size)}')
        if frozen_dtype not in _DTYPES:
            raise ValueError(f'frozen_dtype={frozen_dtype!r}; choose one of '
                             f'{sorted(k for k in _DTYPES if k)} or None')
        self._user_patch_cfg = patch_cfg
        super().__init__(
            arch=arch_settings,
            img_size=img_size,
            patch_size=patch_size,
            out_indices=list(out_indices) if isinstance(out_indices, (list, tuple))
            else out_indices,
            drop_path_rate=drop_path_rate,
            qkv_bias=True,
            norm_cfg=dict(type='LN', eps=1e-6),
            final_norm=True,
            out_type='featmap',
            with_cls_token=False,
            interpolate_mode=interpolate_mode,
            patch_cfg=dict(patch_cfg or {}),
            init_cfg=init_cfg)
        self.checkpoint = checkpoint
        self.patch_size = patch_size
        self.frozen_dtype = _DTYPES[frozen_dtype]
        self.use_torchscript = use_torchscript
        self.verify_on_load = verify_on_load
        self.with_cp = with_cp
        # Kept out of the module tree: not in state_dict, not moved by .to().
        self.__dict__['_ts'] = None
        self._ts_info: dict = {}
        self.last_forward_path = None  # 'eager' | 'torchscript', for tests/logging
        self._trainable_layers = -1
        self.set_trainable_layers(trainable_layers)

    # ------------------------------------------------------------------ state
    @staticmethod
    def _nearest_multiples(size, patch):
        return tuple(max(patch, int(round(s / patch)) * patch) for s in size)

    @property
    def trainable_layers(self) -> int:
        return self._trainable_layers

    @property
    def num_frozen_layers(self) -> int:
        """Leading blocks run without gradients."""
        n = self._trainable_layers
        return 0 if n < 0 else self.num_layers - n

    def _parts(self):
        """``(module_or_param_owner, params, trainable)`` for every part of the ViT."""
        n_frozen = self.num_frozen_layers
        stem_trainable = self._trainable_layers < 0
        stem = [self.pos_embed] + list(self.patch_embed.parameters()) + \
            list(self.pre_norm.parameters())
        yield [self.patch_embed, self.pre_norm, self.drop_after_pos], stem, stem_trainable
        for i, layer in enumerate(self.layers):
            yield [layer], list(layer.parameters()), i >= n_frozen
        yield [self.ln1], list(self.ln1.parameters()), self._trainable_layers != 0

    def set_trainable_layers(self, trainable_layers: int, with_cp: Optional[bool] = None):
        """Switch the trainable part (see class doc); returns ``self``.

        Frozen parameters get ``requires_grad=False``, ``grad=None`` and
        ``frozen_dtype``; trainable ones float32 and ``requires_grad=True``.
        """
        n = int(trainable_layers)
        if not -1 <= n <= self.num_layers:
            raise ValueError(f'trainable_layers={trainable_layers} must be -1 (all), 0 '
                             f'(frozen) or 1..{self.num_layers} (last N blocks)')
        self._trainable_layers = n
        if with_cp is not None:
            self.with_cp = bool(with_cp)
        frozen_dtype = self.frozen_dtype or torch.float32
        with torch.no_grad():
            for _, params, trainable in self._parts():
                dtype = torch.float32 if trainable else frozen_dtype
                for p in params:
                    if p.dtype != dtype:
                        # Same Parameter object: optimizer references stay valid.
                        p.data = p.data.to(dtype)
                    p.requires_grad_(trainable)
                    if not trainable:
                        p.grad = None
        self.train(self.training)
        return self

    def train(self, mode: bool = True):
        """Like ``nn.Module.train`` but frozen parts stay in eval mode; returns self."""
        nn.Module.train(self, mode)
        if mode:
            for modules, _, trainable in self._parts():
                if not trainable:
                    for m in modules:
                        m.eval()
        return self

    # ------------------------------------------------------------------ loading
    def init_weights(self):
        if self.checkpoint is None:
            super().init_weights()
            return
        self.load_torchscript(self.checkpoint)
        self._is_init = True

    def load_torchscript(self, path: str) -> dict:
        """Copy a Sapiens TorchScript file's weights into this model.

        Returns:
            dict: What was found (``prefix, embed_dims, num_layers, grid, ...``).
        """
        ts = load_torchscript_file(path, self.arch_name if self.arch_name != 'custom'
                                   else 'sapiens_1b')
        file_sd = ts.state_dict()  # views of the trace's tensors, no copy
        info = self._inspect(path, ts, file_sd)
        own_sd = self.state_dict(keep_vars=True)
        prefix = info['prefix']
        missing = [k for k in own_sd if prefix + k not in file_sd]
        if missing:
            raise ValueError(f'{path!r} lacks {len(missing)} tensors the {self.arch_name} '
                             f'ViT needs, e.g. {[prefix + k for k in missing[:4]]}')
        own_dev = self.pos_embed.device
        with torch.no_grad():
            for k, p in own_sd.items():
                src = file_sd[prefix + k]
                if k == 'pos_embed':
                    src = self._pos_from_file(src, info)
                if tuple(src.shape) != tuple(p.shape):
                    raise ValueError(f'{path!r}: {prefix + k} has shape {tuple(src.shape)}, '
                                     f'the {self.arch_name} ViT expects {tuple(p.shape)}')
                p.copy_(src)
        used = {prefix + k for k in own_sd}
        ignored = sorted(k for k in file_sd if k not in used)
        if ignored:
            print_log(f'SapiensTorchScriptBackbone: ignored {len(ignored)} tensors of '
                      f'{osp.basename(path)} not used by the encoder, e.g. {ignored[:4]}',
                      logger='current', level=logging.INFO)
        if self.verify_on_load:
            self._verify(ts, file_sd, info, path)
        if self.use_torchscript and self.out_indices == [self.num_layers - 1]:
            self._share_with_trace(ts, file_sd, info)
        else:
            self.__dict__['_ts'] = None
        print_log(
            f'SapiensTorchScriptBackbone: loaded {osp.basename(path)} ({self.arch_name}, '
            f'traced {info["traced_size"][0]}x{info["traced_size"][1]}); position embedding '
            f'{info["grid"]} -> {tuple(self.patch_resolution)} grid on {own_dev}',
            logger='current', level=logging.INFO)
        return info

    def _inspect(self, path, ts, file_sd) -> dict:
        """Find the ViT inside the trace and check it against this arch."""
        key = next((k for k in file_sd if k.endswith('patch_embed.projection.weight')), None)
        if key is None:
            raise ValueError(
                f'{path!r} holds no ViT patch embedding (*patch_embed.projection.weight); '
                f'first tensors: {list(file_sd)[:5]}. Is it a Sapiens pretrain file?')
        prefix = key[:-len('patch_embed.projection.weight')]
        w = file_sd[key]
        layer_ids = {int(m.group(1)) for k in file_sd
                     for m in [re.match(re.escape(prefix) + r'layers\.(\d+)\.', k)] if m}
        fc1 = file_sd.get(prefix + 'layers.0.ffn.layers.0.0.weight')
        pos = file_sd.get(prefix + 'pos_embed')
        if pos is None:
            raise ValueError(f'{path!r} has no {prefix}pos_embed')
        found = dict(embed_dims=int(w.shape[0]), num_layers=len(layer_ids),
                     feedforward_channels=None if fc1 is None else int(fc1.shape[0]),
                     patch_size=int(w.shape[-1]), in_channels=int(w.shape[1]))
        expected = dict(embed_dims=self.embed_dims, num_layers=self.num_layers,
                        feedforward_channels=self.arch_settings['feedforward_channels'],
                        patch_size=self.patch_size, in_channels=3)
        diff = {k: (expected[k], found[k]) for k in expected if expected[k] != found[k]}
        if diff:
            file_arch = sapiens_arch_name(found['embed_dims'], found['num_layers'])
            fix = (f"set model.backbone.arch='{file_arch}'" if file_arch else
                   'pass arch=dict(embed_dims=..., num_layers=..., num_heads=..., '
                   'feedforward_channels=...) matching the file')
            raise ValueError(
                f'{path!r} is a different ViT than arch={self.arch_name!r}: '
                + ', '.join(f'{k} expected {e}, found {f}' for k, (e, f) in diff.items())
                + f'; {fix}')
        n_extra = 1 if (prefix + 'cls_token') in file_sd else 0
        n_patches = pos.shape[1] - n_extra
        side = int(round(math.sqrt(n_patches)))
        if side * side != n_patches:
            raise ValueError(f'{path!r}: {prefix}pos_embed has {n_patches} patch tokens, '
                             'not a square grid; cannot tell the traced input size')
        grid = (side, side)
        conv = _parse_ts_conv(_submodule(ts, prefix + 'patch_embed.projection'))
        return dict(prefix=prefix, n_extra=n_extra, grid=grid, conv=conv, **found,
                    traced_size=(grid[0] * self.patch_size, grid[1] * self.patch_size))

    def _pos_from_file(self, pos: torch.Tensor, info: dict) -> torch.Tensor:
        """``(1, n_extra + G*G, C)`` from the file → ``(1, h*w, C)`` for ``img_size``."""
        pos = pos[:, info['n_extra']:].float()
        return resize_pos_embed(pos, info['grid'], tuple(self.patch_resolution),
                                self.interpolate_mode, 0)

    def _verify(self, ts, file_sd, info: dict, path: str):
        """Run small random inputs through the trace's and our patch embedding, block 0
        and final norm; a mismatch means an arch detail the weights do not show."""
        prefix = info['prefix']
        if info['conv'] is not None:
            stride, padding = info['conv']
            own = self.patch_embed.projection
            if list(own.stride) != stride or (self._user_patch_cfg is None
                                              and list(own.padding) != padding):
                raise ValueError(
                    f'{path!r}: the traced patch conv has stride {stride}, padding '
                    f'{padding}; this model has stride {list(own.stride)}, padding '
                    f'{list(own.padding)}; set model.backbone.patch_cfg=dict(padding='
                    f'{padding[0]}) and patch_size={stride[0]}')
        gen = torch.Generator().manual_seed(0)
        checks = [('layers.0', torch.randn(1, 8, self.embed_dims, generator=gen)),
                  ('ln1', torch.randn(1, 8, self.embed_dims, generator=gen)),
                  ('patch_embed.projection',
                   torch.randn(1, 3, 2 * self.patch_size, 2 * self.patch_size,
                               generator=gen))]
        for name, x in checks:
            try:
                ts_mod = _submodule(ts, prefix + name)
                with torch.no_grad(), warnings.catch_warnings():
                    warnings.simplefilter('ignore')
                    ref = ts_mod(x)
            except Exception as e:  # noqa: BLE001  (a trace may not expose submodules)
                print_log(f'SapiensTorchScriptBackbone: could not probe {prefix}{name} of '
                          f'the trace ({type(e).__name__}); skipped that check',
                          logger='current', level=logging.WARNING)
                continue
            mine = _submodule(self, name)
            # Our module's code with the file's fp32 weights: isolates structure
            # (heads, eps, padding) from our storage dtype/device.
            weights = {k: file_sd.get(f'{prefix}{name}.{k}') for k in mine.state_dict()}
            if any(v is None for v in weights.values()):
                continue
            was_training = mine.training
            mine.eval()
            try:
                with torch.no_grad():
                    out = functional_call(mine, weights, (x, ))
            finally:
                mine.train(was_training)
            err = (out - ref).abs().max().item()
            tol = 1e-3 * max(1.0, ref.abs().max().item())
            if err > tol:
                hint = (f'num_heads (this arch: {self.arch_settings["num_heads"]}) or the '
                        'LayerNorm eps' if name != 'patch_embed.projection'
                        else 'the conv padding (model.backbone.patch_cfg)')
                raise ValueError(
                    f'{path!r}: {prefix}{name} of the trace and of the {self.arch_name} ViT '
                    f'differ on the same input (max abs diff {err:.3g}); check {hint}')

    def _share_with_trace(self, ts, file_sd, info):
        """Point the trace's parameters at ours so both paths use one copy."""
        prefix = info['prefix']
        for k, p in self.named_parameters():
            src = file_sd.get(prefix + k)
            if src is None:
                continue
            if tuple(src.shape) == tuple(p.shape):
                owner, leaf = k.rsplit('.', 1) if '.' in k else ('', k)
                setattr(_submodule(ts, prefix + owner), leaf, p)
        own = dict(self.named_parameters())
        # Encoder tensors the trace keeps for itself (cls token...); an MAE decoder
        # outside the encoder prefix is not used by the feature forward and stays put.
        non_shared = [k for k in file_sd
                      if k.startswith(prefix) and k[len(prefix):] not in own]
        pos_shared = tuple(file_sd[prefix + 'pos_embed'].shape) == tuple(self.pos_embed.shape)
        if not pos_shared:
            non_shared.append(prefix + 'pos_embed')
        self.__dict__['_ts'] = ts
        self._ts_info = dict(
            info, non_shared=non_shared, pos_shared=pos_shared,
            pos_extra=file_sd[prefix + 'pos_embed'][:, :info['n_extra']].clone(),
            pos_version=None if pos_shared else self.pos_embed._version)

    # ------------------------------------------------------------------ forward
    def _check_input(self, x: torch.Tensor):
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f'SapiensTorchScriptBackbone expects (B, 3, H, W) images, '
                             f'got {tuple(x.shape)}')
        h, w = x.shape[-2:]
        if h % self.patch_size or w % self.patch_size:
            raise ValueError(
                f'input {h}x{w} (H x W) is not a multiple of patch_size={self.patch_size}; '
                f'use e.g. {self._nearest_multiples((h, w), self.patch_size)} '
                '(codec input_size is (W, H))')

    def _needs_grad(self) -> bool:
        return torch.is_grad_enabled() and self._trainable_layers != 0

    def _torchscript_applicable(self, x) -> bool:
        ts = self.__dict__.get('_ts')
        # one dtype for all weights: the trace has no per-block casts
        uniform = (self._trainable_layers in (0, -1)
                   or self.frozen_dtype in (None, torch.float32))
        return (ts is not None and self.use_torchscript and uniform
                and tuple(x.shape[-2:]) == tuple(self._ts_info['traced_size'])
                and not self._needs_grad())

    def _sync_trace(self, device, dtype):
        """Give the trace's own tensors (pos_embed, cls token...) our device/dtype and
        the current (possibly fine-tuned) position embedding."""
        ts, info = self.__dict__['_ts'], self._ts_info
        prefix = info['prefix']
        for k in info['non_shared']:
            owner, leaf = k.rsplit('.', 1)
            mod = _submodule(ts, owner)
            t = getattr(mod, leaf)
            if isinstance(t, torch.Tensor) and (t.device != device or
                                                (t.is_floating_point() and t.dtype != dtype)):
                setattr(mod, leaf, t.to(device, dtype if t.is_floating_point() else t.dtype))
        if not info['pos_shared'] and info['pos_version'] != self.pos_embed._version:
            pos = resize_pos_embed(self.pos_embed.detach().float(),
                                   tuple(self.patch_resolution), info['grid'],
                                   self.interpolate_mode, 0)
            pos = torch.cat([info['pos_extra'].to(pos), pos], dim=1)
            setattr(_submodule(ts, prefix), 'pos_embed', pos.to(device, dtype))
            info['pos_version'] = self.pos_embed._version

    def _forward_torchscript(self, x):
        dtype = self.pos_embed.dtype
        self._sync_trace(x.device, dtype)
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter('ignore', DeprecationWarning)
            out = self.__dict__['_ts'](x.to(dtype))
        out = out if isinstance(out, (tuple, list)) else (out, )
        self.last_forward_path = 'torchscript'
        return tuple(o.float() for o in out)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """``(B, 3, H, W)`` → tuple of ``(B, C, H/p, W/p)`` float32 feature maps."""
        self._check_input(x)
        if self._torchscript_applicable(x):
            return self._forward_torchscript(x)
        self.last_forward_path = 'eager'
        n_frozen = self.num_frozen_layers if self._trainable_layers >= 0 else -1
        stem_ctx = torch.no_grad() if self._trainable_layers >= 0 else contextlib.nullcontext()
        outs = []
        with stem_ctx:
            x, hw = self.patch_embed(x.to(self.patch_embed.projection.weight.dtype))
            x = x + resize_pos_embed(self.pos_embed, self.patch_resolution, hw,
                                     mode=self.interpolate_mode, num_extra_tokens=0)
            x = self.pre_norm(self.drop_after_pos(x))
            for i in range(max(n_frozen, 0)):
                x = self._run_layer(i, x, outs, hw, checkpointed=False)
        if n_frozen < self.num_layers:
            x = x.float()
            for i in range(max(n_frozen, 0), self.num_layers):
                x = self._run_layer(i, x, outs, hw, checkpointed=self.with_cp)
        return tuple(o.float() for o in outs)

    def _run_layer(self, i, x, outs, hw, checkpointed):
        layer = self.layers[i]
        if checkpointed and self.training and torch.is_grad_enabled():
            x = activation_checkpoint(layer, x, use_reentrant=False)
        else:
            x = layer(x)
        if i == self.num_layers - 1:
            x = self.ln1(x)
        if i in self.out_indices:
            outs.append(self._format_output(x, hw))
        return x

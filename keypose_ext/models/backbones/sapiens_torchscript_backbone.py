"""Sapiens ViT backbone whose weights come from a Sapiens TorchScript pretrain file.

Reading and checking the file is :mod:`keypose_ext.utils.sapiens_torchscript` and the
adapters are :mod:`keypose_ext.utils.sapiens_lora`; this module freezes, unfreezes
(last blocks, everything, or low-rank adapters) and forwards. It is over 300 lines
because the class docstring documents the four training states and their memory
trade-offs next to the code that switches them.
"""
import contextlib
import copy
import logging
import os.path as osp
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmengine.logging import print_log
from mmpose.registry import MODELS
from mmpretrain.models.backbones import VisionTransformer
from mmpretrain.models.utils import resize_pos_embed
from torch.func import functional_call
from torch.utils.checkpoint import checkpoint as activation_checkpoint

from keypose_ext.utils import sapiens_lora as lora_utils
from keypose_ext.utils import sapiens_torchscript as ts_utils
from keypose_ext.utils.errors import UserValueError
from keypose_ext.utils.sapiens_archs import resolve_sapiens_arch

_DTYPES = {
    None: None,
    'float32': torch.float32,
    'fp32': torch.float32,
    'float16': torch.float16,
    'fp16': torch.float16,
    'half': torch.float16,
    'bfloat16': torch.bfloat16,
    'bf16': torch.bfloat16
}
_LORA_KEYS = {'rank', 'alpha', 'drop_rate', 'targets'}


@MODELS.register_module()
class SapiensTorchScriptBackbone(VisionTransformer):
    """Sapiens ViT (mmpretrain ``VisionTransformer``, no cls token, ``out_type='featmap'``)
    initialised from a TorchScript pretrain file.

    :meth:`init_weights` (called by the runner before training; ``tools/test.py`` loads a
    trained checkpoint instead and never reads the pretrain file) reads the file with
    :mod:`keypose_ext.utils.sapiens_torchscript`: the encoder's weights are copied in
    (cls token dropped, the 64×64 position grid resized bicubically to
    ``img_size / 16`` by mmpretrain's own load hook; MAE decoder and preprocessor
    ignored) and checked numerically against the trace.

    What trains (:class:`SapiensPhaseSwitchHook` switches it; parameter objects never
    change, only their dtype, so an optimizer built over all parameters stays valid):

    - ``set_trainable_layers(0)``: frozen (phase 1): ``requires_grad=False``, eval mode
      kept across ``model.train()``, forward under ``torch.no_grad()``, weights stored in
      ``frozen_dtype`` (``'float16'`` halves Sapiens-1B's 4.5 GB of fp32 weights);
    - ``set_trainable_layers(N)``: the last N blocks and the final norm train in float32;
      the rest as above;
    - ``set_trainable_layers(-1)``: everything trains in float32;
    - ``set_lora_trainable()`` (needs ``lora``): low-rank adapters on every block's
      attention and MLP plus the final norm train (float32); the base weights stay
      frozen in ``frozen_dtype``, and gradients flow through every block.

    With ``lora`` set, the adapters exist from construction (zero: the function is the
    plain ViT's), so the optimizer holds them from the start. State dicts with and
    without adapters load into either layout (a load hook merges or splits them).

    Args:
        checkpoint (str, optional): TorchScript pretrain file (``.pt2`` or any suffix).
            ``None`` keeps a random init (tests, benchmarks, a run that loads a checkpoint).
        arch (str | dict): ``'sapiens_0.3b' | 'sapiens_0.6b' | 'sapiens_1b' |
            'sapiens_2b'`` (prefix optional) or a dict with ``embed_dims, num_layers,
            num_heads, feedforward_channels``.
        img_size (tuple[int, int]): Training input ``(H, W)``, multiples of
            ``patch_size`` (the configs derive it from the codec's ``(W, H)``).
        patch_size (int): Defaults to 16.
        trainable_layers (int): Initial state, see above. Defaults to -1.
        frozen_dtype (str, optional): ``'float16' | 'bfloat16' | None`` (float32).
        with_cp (bool): Activation checkpointing of the blocks that need gradients.
        lora (dict, optional): ``rank``, ``alpha``, ``drop_rate`` (0), ``targets``
            (default: ``attn.qkv, attn.proj, ffn.layers.0.0, ffn.layers.1``).
        verify_on_load (bool): Run the numerical checks against the trace.
        drop_path_rate (float): Stochastic depth. Defaults to 0.
        patch_cfg (dict, optional): mmcv ``PatchEmbed`` overrides. The default is the
            pretrain trace's conv (padding 0); a file with another conv is an error
            naming the fix. Meta's pose configs use ``dict(padding=2)`` on the same
            weights; set here it is used as given and the conv check is skipped.
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
                 lora: Optional[dict] = None,
                 verify_on_load: bool = True,
                 drop_path_rate: float = 0.,
                 patch_cfg: Optional[dict] = None,
                 out_indices: Union[int, Sequence[int]] = -1,
                 interpolate_mode: str = 'bicubic',
                 init_cfg: Optional[dict] = None):
        self.arch_name, arch_settings = resolve_sapiens_arch(arch)
        img_size = tuple(
            int(s)
            for s in (img_size if isinstance(img_size, (list, tuple)) else (img_size, img_size)))
        if len(img_size) != 2 or any(s % patch_size or s <= 0 for s in img_size):
            raise UserValueError(
                f'model.backbone.img_size {img_size} (H, W) must be positive multiples of '
                f'patch_size={patch_size}; e.g. {_nearest_multiples(img_size, patch_size)}')
        if frozen_dtype not in _DTYPES:
            raise UserValueError(f'model.backbone.frozen_dtype={frozen_dtype!r}; choose one '
                                 f'of {sorted(k for k in _DTYPES if k)} or None')
        if lora is not None and (set(lora) - _LORA_KEYS or 'rank' not in lora):
            raise UserValueError(f'model.backbone.lora={lora}: needs rank (e.g. 8) and may '
                                 f'have {sorted(_LORA_KEYS)}')
        super().__init__(
            arch=arch_settings,
            img_size=img_size,
            patch_size=patch_size,
            out_indices=list(out_indices) if isinstance(out_indices,
                                                        (list, tuple)) else out_indices,
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
        self.verify_on_load = verify_on_load
        self.with_cp = with_cp
        self._custom_patch_padding = 'padding' in (patch_cfg or {})
        self.lora_cfg = dict(lora) if lora is not None else None
        if lora is not None:
            lora_utils.add_lora(self.layers, int(lora['rank']),
                                float(lora.get('alpha', lora['rank'])),
                                float(lora.get('drop_rate', 0.)),
                                tuple(lora.get('targets', lora_utils.DEFAULT_TARGETS)))
        self._register_load_state_dict_pre_hook(self._convert_lora_keys)
        self._mode, self._trainable_layers = 'layers', -1
        self.set_trainable_layers(trainable_layers)

    # ------------------------------------------------------------------ state
    @property
    def trainable_layers(self) -> int:
        return self._trainable_layers

    @property
    def finetune_mode(self) -> str:
        """``'frozen' | 'last_blocks' | 'full' | 'lora'``."""
        if self._mode == 'lora':
            return 'lora'
        return {0: 'frozen', -1: 'full'}.get(self._trainable_layers, 'last_blocks')

    def _first_grad_block(self) -> int:
        """Index of the first block that needs gradients (``num_layers``: none)."""
        if self._mode == 'lora' or self._trainable_layers < 0:
            return 0
        return self.num_layers - self._trainable_layers

    def _groups(self):
        """``(modules, params, trainable, keep_train_mode)`` for every part of the ViT."""
        lora_params = {id(p) for p in lora_utils.lora_parameters(self)}
        lora, first = self._mode == 'lora', self._first_grad_block()
        stem_trainable = not lora and self._trainable_layers < 0
        stem = [self.pos_embed] + list(self.patch_embed.parameters()) + \
            list(self.pre_norm.parameters())
        yield ([self.patch_embed, self.pre_norm,
                self.drop_after_pos], stem, stem_trainable, stem_trainable)
        for i, layer in enumerate(self.layers):
            base = [p for p in layer.parameters() if id(p) not in lora_params]
            yield [layer], base, not lora and i >= first, i >= first
        ln_trainable = lora or self._trainable_layers != 0
        yield [self.ln1], list(self.ln1.parameters()), ln_trainable, ln_trainable
        # adapters: always float32, trained only in LoRA mode
        yield [], lora_utils.lora_parameters(self), lora, lora

    def set_trainable_layers(self, trainable_layers: int, with_cp: Optional[bool] = None):
        """0 frozen, N last blocks + final norm, -1 everything (see class doc); returns self."""
        n = int(trainable_layers)
        if not -1 <= n <= self.num_layers:
            raise UserValueError(f'trainable_layers={trainable_layers} must be -1 (all), 0 '
                                 f'(frozen) or 1..{self.num_layers} (last N blocks)')
        self._mode, self._trainable_layers = 'layers', n
        return self._apply_state(with_cp)

    def set_lora_trainable(self, with_cp: Optional[bool] = None):
        """Train the adapters of every block and the final norm; returns self."""
        if self.lora_cfg is None:
            raise UserValueError(
                "LoRA fine-tuning needs adapters: set model.backbone.lora=dict(rank=8, "
                "alpha=16), or use phase2=dict(mode='last_blocks', trainable_layers=2)")
        self._mode, self._trainable_layers = 'lora', 0
        return self._apply_state(with_cp)

    def _apply_state(self, with_cp):
        if with_cp is not None:
            self.with_cp = bool(with_cp)
        frozen_dtype = self.frozen_dtype or torch.float32
        lora_params = {id(p) for p in lora_utils.lora_parameters(self)}
        with torch.no_grad():
            for _, params, trainable, _ in self._groups():
                for p in params:
                    dtype = torch.float32 if trainable or id(p) in lora_params \
                        else frozen_dtype
                    if p.dtype != dtype:
                        p.data = p.data.to(dtype)  # same Parameter: optimizer stays valid
                    p.requires_grad_(trainable)
                    if not trainable:
                        p.grad = None
        self.train(self.training)
        return self

    def train(self, mode: bool = True):
        """Like ``nn.Module.train`` but frozen parts stay in eval mode; returns self."""
        nn.Module.train(self, mode)
        if mode:
            for modules, _, _, keep_train in self._groups():
                if not keep_train:
                    for m in modules:
                        m.eval()
        return self

    # ------------------------------------------------------------------ loading
    def _convert_lora_keys(self, state_dict, prefix, *args, **kwargs):
        """Load a state dict with adapters into a plain model (merging them) and a plain
        or merged one into a model with adapters (zero adapters)."""
        layers = lora_utils.lora_layers(self.layers)
        if layers:
            lora_utils.plain_to_lora_state_dict(state_dict, prefix + 'layers.', layers)
        else:
            lora_utils.merge_lora_state_dict(state_dict, prefix + 'layers.')

    def init_weights(self):
        if self.checkpoint is None:
            super().init_weights()
            return
        self.load_torchscript(self.checkpoint)
        self._is_init = True

    def load_torchscript(self, path: str) -> dict:
        """Copy a Sapiens TorchScript file's encoder weights into this model.

        Returns:
            dict: What was found (``prefix, embed_dims, num_layers, grid, ...``).
        """
        hint = self.arch_name if self.arch_name != 'custom' else 'sapiens_1b'
        ts = ts_utils.load_torchscript_file(path, hint)
        file_sd = ts.state_dict()  # views of the trace's tensors, no copy
        info = ts_utils.inspect_encoder(path, ts, file_sd, self.arch_name,
                                        dict(self.arch_settings, patch_size=self.patch_size))
        enc_sd, ignored = ts_utils.encoder_state_dict(file_sd, info)
        try:
            result = self.load_state_dict(dict(enc_sd), strict=False)
        except RuntimeError as e:
            raise UserValueError(f'{path!r} does not fit the {self.arch_name} ViT: {e}') \
                from None
        if result.missing_keys or result.unexpected_keys:
            raise UserValueError(
                f'{path!r}: the {self.arch_name} ViT needs tensors the file lacks '
                f'{result.missing_keys[:4]} or the file has unexpected encoder tensors '
                f'{result.unexpected_keys[:4]}')
        if ignored:
            print_log(
                f'SapiensTorchScriptBackbone: ignored {len(ignored)} tensors of '
                f'{osp.basename(path)} outside the encoder, e.g. {ignored[:4]}',
                logger='current',
                level=logging.INFO)
        if self.verify_on_load:
            probes = {}
            for name in ts_utils.PROBES:
                probe = lora_utils.strip_lora(copy.deepcopy(ts_utils.submodule(self, name)))
                probes[name] = probe.float().cpu()
            ts_utils.verify_against_trace(
                path,
                ts,
                enc_sd,
                info,
                probes,
                self.arch_settings['num_heads'],
                check_conv=not self._custom_patch_padding)
        print_log(
            f'SapiensTorchScriptBackbone: loaded {osp.basename(path)} ({self.arch_name}, '
            f'traced {info["traced_size"][0]}x{info["traced_size"][1]}); position embedding '
            f'{info["grid"]} -> {tuple(self.patch_resolution)} grid',
            logger='current',
            level=logging.INFO)
        return info

    # ------------------------------------------------------------------ forward
    def _check_input(self, x: torch.Tensor):
        if x.dim() != 4 or x.shape[1] != 3:
            raise UserValueError(f'SapiensTorchScriptBackbone expects (B, 3, H, W) images, '
                                 f'got {tuple(x.shape)}')
        h, w = x.shape[-2:]
        if h % self.patch_size or w % self.patch_size:
            raise UserValueError(
                f'input {h}x{w} (H x W) is not a multiple of patch_size={self.patch_size}; '
                f'use e.g. {_nearest_multiples((h, w), self.patch_size)} '
                '(codec input_size is (W, H))')

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """``(B, 3, H, W)`` → tuple of ``(B, C, H/p, W/p)`` float32 feature maps."""
        self._check_input(x)
        first = self._first_grad_block()
        stem_grad = self._mode == 'layers' and self._trainable_layers < 0
        outs = []
        with contextlib.nullcontext() if stem_grad else torch.no_grad():
            x, hw = self.patch_embed(x.to(self.patch_embed.projection.weight.dtype))
            x = x + resize_pos_embed(
                self.pos_embed,
                self.patch_resolution,
                hw,
                mode=self.interpolate_mode,
                num_extra_tokens=0)
            x = self.pre_norm(self.drop_after_pos(x))
            for i in range(first):
                x = self._run_layer(i, x, outs, hw, checkpointed=False)
        for i in range(first, self.num_layers):
            x = self._run_layer(i, x, outs, hw, checkpointed=self.with_cp)
        return tuple(o.float() for o in outs)

    def _run_layer(self, i, x, outs, hw, checkpointed):
        layer = self.layers[i]
        if checkpointed and self.training and torch.is_grad_enabled():
            x = activation_checkpoint(self._call_block, layer, x, use_reentrant=False)
        else:
            x = self._call_block(layer, x)
        if i == self.num_layers - 1:
            x = self.ln1(x.to(self.ln1.weight.dtype))
        if i in self.out_indices:
            outs.append(self._format_output(x, hw))
        return x

    @staticmethod
    def _call_block(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """``(B, N, C)`` → ``(B, N, C)`` through one block whose weights may be fp16.

        Under autocast (GPU training) fp16 weights are used as stored. Without it (CPU)
        a block that needs gradients runs on float32 copies of its low-precision
        weights: backpropagating through fp16 activations without loss scaling
        underflows to zero adapter gradients."""
        low = {n: p for n, p in layer.named_parameters() if p.dtype != torch.float32}
        if (low and torch.is_grad_enabled() and not torch.is_autocast_enabled(x.device.type)):
            return functional_call(
                layer, {
                    n: p.float()
                    for n, p in low.items()
                }, (x.float(), ), strict=False)
        return layer(x.to(layer.ln1.weight.dtype))


def _nearest_multiples(size, patch):
    return tuple(max(patch, int(round(s / patch)) * patch) for s in size)

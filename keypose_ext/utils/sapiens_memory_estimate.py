"""GPU memory of Sapiens fine-tuning phases, estimated from the real config.

(About 300 lines: the terms counted are listed here, next to the code counting them.)

One entry point, :func:`estimate_config`, used by ``tools/check_env.py`` and
:class:`SapiensPhaseSwitchHook`: it reads the backbone (arch, input size, frozen dtype,
adapters), the head (its deconv/conv widths and keypoint count, mmpose's defaults for
what the config omits), batch size, gradient accumulation, AMP, the hook's phase-2
route and an FSDP CPU-offload strategy from the config, so nothing is re-declared.
``benchmarks/sapiens_memory.py`` measures the same phases on a GPU.

Counted (bytes):
- frozen parameters in their storage dtype (fp16: 2 B/param), no grads, no state;
- trainable parameters (incl. LoRA adapters and the head): fp32 weight + grad (4 + 4),
  AdamW ``exp_avg`` + ``exp_avg_sq`` (4 + 4; a non-fused AdamW adds a 4 B temporary)
  and, under AMP, the fp16 copy autocast keeps of each weight for the step (2);
- activations kept for backward, per token and per block that needs gradients, with an
  efficient attention kernel (no ``N×N`` matrix): the two LayerNorms' float32 inputs
  (``8·C`` bytes) and ``6·C + 2·F`` values in the activation dtype (the inputs of qkv,
  proj and fc1, q/k/v, the GELU's input and output), i.e. ``20·C + 4·F`` bytes under
  AMP (C embed dims, F FFN width): what autograd saves for the backbone's block, counted
  in ``tests/test_sapiens_memory_estimate.py`` at Sapiens-1B width; with activation
  checkpointing the block input (``4·C``) plus one block recomputed. LoRA needs
  gradients through *every* block (its rank-r intermediates are negligible);
- the frozen prefix under ``no_grad``: one block's transient working set;
- head activations and the input batch; 64 MiB cuBLAS/cuDNN workspace;
- ``reserved`` = allocated + 5 % fragmentation (compare with ``max_memory_reserved``);
- ``total`` = reserved + the CUDA context (~0.35 GiB, outside PyTorch's allocator):
  what the card must hold.
With FSDP CPU offload (full fine-tuning) the fp32 weights, grads and AdamW state live in
host memory (``host_bytes``, 16 B/param); the GPU holds about two blocks' fp16 weights
and grads at a time plus the activations.
"""
import inspect
from typing import Dict, List, Optional, Sequence

from .sapiens_archs import resolve_phase2, resolve_sapiens_arch

GiB = 1024**3
MiB = 1024**2
CUDA_CONTEXT_BYTES = int(0.35 * GiB)
WORKSPACE_BYTES = 64 * MiB
FRAGMENTATION = 0.05
SAFETY_BYTES = int(0.1 * GiB)


def format_bytes(n: int) -> str:
    return f'{n / GiB:.2f} GiB'


def vit_param_counts(arch: dict,
                     grid_hw: Sequence[int],
                     patch_size: int = 16,
                     in_channels: int = 3) -> Dict[str, int]:
    """Parameter counts of an mmpretrain ViT (qkv bias, final LN, no cls token)."""
    d, ffn, n_layers = arch['embed_dims'], arch['feedforward_channels'], arch['num_layers']
    block = (3 * d * d + 3 * d) + (d * d + d) + (d * ffn + ffn) + (ffn * d + d) + 4 * d
    stem = in_channels * patch_size * patch_size * d + d + grid_hw[0] * grid_hw[1] * d
    return dict(block=block, stem=stem, final_norm=2 * d, total=stem + n_layers * block + 2 * d)


def lora_params_per_block(arch: dict, rank: int, num_targets: int = 4) -> int:
    """Adapter parameters of one block with the default targets (qkv, proj, fc1, fc2)."""
    d, f = arch['embed_dims'], arch['feedforward_channels']
    shapes = [(d, 3 * d), (d, d), (d, f), (f, d)][:num_targets]
    return sum(rank * (i + o) for i, o in shapes)


def head_settings(head_cfg: dict) -> dict:
    """The config's ``HeatmapHead`` sizes, with mmpose's defaults for omitted keys."""
    from mmpose.models.heads import HeatmapHead
    defaults = {
        k: v.default
        for k, v in inspect.signature(HeatmapHead.__init__).parameters.items()
        if v.default is not inspect.Parameter.empty
    }
    keys = ('deconv_out_channels', 'deconv_kernel_sizes', 'conv_out_channels', 'conv_kernel_sizes')
    out = {k: tuple(head_cfg.get(k, defaults[k]) or ()) for k in keys}
    out['out_channels'] = int(head_cfg['out_channels'])
    return out


def head_memory(head: dict, in_channels: int, grid_hw: Sequence[int], batch_size: int,
                act_bytes: int) -> Dict[str, int]:
    """``params`` and stored ``activations`` (bytes) of an mmpose ``HeatmapHead``."""
    n, c = 0, in_channels
    h, w = grid_hw
    acts = 0
    for out, k in zip(head['deconv_out_channels'], head['deconv_kernel_sizes']):
        n += c * out * k * k + 2 * out  # deconv (no bias) + BN
        c, h, w = out, h * 2, w * 2
        acts += batch_size * c * h * w * (act_bytes + 4 + 4 + act_bytes)
    for out, k in zip(head['conv_out_channels'], head['conv_kernel_sizes']):
        n += c * out * k * k + out + 2 * out  # conv + bias + BN
        c = out
        acts += batch_size * c * h * w * (act_bytes + 4 + 4 + act_bytes)
    k_out = head['out_channels']
    n += c * k_out + k_out
    acts += batch_size * k_out * h * w * 4 * 4  # pred, target, diff, grad
    return dict(params=n, activations=acts)


def estimate_memory(arch: dict,
                    input_hw: Sequence[int],
                    batch_size: int,
                    mode: str,
                    trainable_layers: int = 0,
                    *,
                    head: dict,
                    frozen_dtype_bytes: int = 2,
                    amp: bool = True,
                    with_cp: bool = False,
                    fused_optimizer: bool = True,
                    lora_rank: int = 0,
                    offload: bool = False,
                    patch_size: int = 16) -> Dict[str, int]:
    """Peak memory of one training step, by component (bytes).

    Args:
        mode: ``'frozen'`` (phase 1), ``'last_blocks'`` (``trainable_layers`` N),
            ``'full'`` or ``'lora'`` (adapters of rank ``lora_rank`` on every block).
        head: :func:`head_settings` of the config.
        offload: full fine-tuning with FSDP CPU offload (world size 1).

    Returns:
        dict: components, ``allocated``, ``reserved``, ``total`` (GPU incl. the CUDA
        context), ``host_bytes`` (offloaded state), ``params_frozen/trainable``.
    """
    d, ffn, n_layers = arch['embed_dims'], arch['feedforward_channels'], arch['num_layers']
    gh, gw = input_hw[0] // patch_size, input_hw[1] // patch_size
    counts = vit_param_counts(arch, (gh, gw), patch_size)
    act_bytes = 2 if amp else 4
    n_grad = {
        'frozen': 0,
        'last_blocks': trainable_layers,
        'full': n_layers,
        'lora': n_layers
    }[mode]
    stem_trainable = mode == 'full'
    n_base_train = n_grad if mode in ('last_blocks', 'full') else 0
    backbone_all = counts['total']
    trainable = n_base_train * counts['block'] + (counts['stem'] if stem_trainable else 0) \
        + (counts['final_norm'] if mode != 'frozen' else 0)
    # adapters exist whenever the backbone has them; they train only in 'lora' mode
    adapters = n_layers * lora_params_per_block(arch, lora_rank) if lora_rank else 0
    train_adapters = adapters if mode == 'lora' else 0
    frozen = backbone_all - trainable
    hd = head_memory(head, d, (gh, gw), batch_size, act_bytes)
    tokens = batch_size * gh * gw
    per_token_block = 8 * d + (6 * d + 2 * ffn) * act_bytes
    if n_grad == 0:
        block_acts = 0
    elif with_cp:
        block_acts = n_grad * tokens * d * 4 + tokens * per_token_block
    else:
        block_acts = n_grad * tokens * per_token_block
    frozen_transient = tokens * (8 * d + 4 * ffn) if n_grad < n_layers else 0
    train_params = trainable + train_adapters + hd['params']
    comp = {}
    if offload:
        # FSDP: fp32 master weights, grads and AdamW on the host; on the GPU the
        # unsharded fp16 weights + grads of ~2 units (current + prefetched) and the root.
        unit = 2 * counts['block'] + counts['stem'] + hd['params']
        comp['unsharded weights + grads (fp16)'] = unit * (2 + 2)
        comp['frozen weights'] = 0
    else:
        comp['frozen weights'] = frozen * frozen_dtype_bytes + (adapters - train_adapters) * 4
        comp['trainable weights + grads'] = train_params * 8
        comp['AdamW state'] = train_params * (8 if fused_optimizer else 12)
        if amp:
            comp['autocast fp16 weight copies'] = train_params * 2
    comp['activations (backbone)'] = block_acts + frozen_transient + \
        (tokens * d * 8 if stem_trainable else 0)
    comp['activations (head + input)'] = hd['activations'] + \
        batch_size * 3 * input_hw[0] * input_hw[1] * (4 + act_bytes)
    comp['workspace'] = WORKSPACE_BYTES
    allocated = sum(comp.values())
    comp['fragmentation'] = int(allocated * FRAGMENTATION)
    comp['CUDA context'] = CUDA_CONTEXT_BYTES
    comp.update(
        allocated=allocated,
        reserved=allocated + comp['fragmentation'],
        total=allocated + comp['fragmentation'] + CUDA_CONTEXT_BYTES,
        host_bytes=(backbone_all + hd['params']) * 16 if offload else 0,
        params_frozen=0 if offload else frozen,
        params_trainable=backbone_all + hd['params'] if offload else train_params)
    return comp


def plan_from_config(cfg) -> dict:
    """What :func:`estimate_memory` needs, read from a Sapiens config."""
    bb = cfg.model.backbone
    if bb.get('type') != 'SapiensTorchScriptBackbone':
        from .errors import UserValueError
        raise UserValueError(f'{cfg.filename}: model.backbone.type is {bb.get("type")!r}; the '
                             'Sapiens memory estimate needs SapiensTorchScriptBackbone')
    name, arch = resolve_sapiens_arch(bb.get('arch', 'sapiens_1b'))
    hook = next(
        (h
         for h in cfg.get('custom_hooks', None) or [] if h.get('type') == 'SapiensPhaseSwitchHook'),
        None)
    initial = int(bb.get('trainable_layers', -1))
    phase2 = resolve_phase2(
        hook.get('phase2') if hook else dict(trainable_layers=initial if initial else -1))
    ow = cfg.optim_wrapper
    strategy = cfg.get('strategy', None) or {}
    wrapper = strategy.get('model_wrapper', None) or {}
    lora = bb.get('lora', None)
    return dict(
        arch_name=name,
        arch=arch,
        input_hw=tuple(bb.get('img_size', (384, 288))),
        patch_size=int(bb.get('patch_size', 16)),
        batch_size=int(cfg.train_dataloader.batch_size),
        accumulative_counts=int(ow.get('accumulative_counts', 1)),
        amp=ow.get('type', 'OptimWrapper') in ('AmpOptimWrapper', 'CpuFallbackAmpOptimWrapper'),
        fused_optimizer=bool(ow.get('optimizer', {}).get('fused', False)),
        frozen_dtype_bytes=4 if bb.get('frozen_dtype') in (None, 'float32', 'fp32') else 2,
        with_cp=bool(bb.get('with_cp', False)),
        lora_rank=int(lora['rank']) if lora else 0,
        offload=bool(wrapper.get('cpu_offload', False)),
        switch_epoch=int(hook.get('switch_epoch', 10)) if hook else 0,
        phase2=dict(
            phase2,
            with_cp=bool(
                phase2['with_cp'] if phase2['with_cp'] is not None else bb.get('with_cp', False))),
        head=head_settings(cfg.model.head))


def estimate_plan(plan: dict, **overrides) -> Dict[str, Dict[str, int]]:
    """``{'phase 1': components, 'phase 2': components}`` of a :func:`plan_from_config`
    (phase 1 absent when the run starts in phase 2); ``overrides`` replace plan keys
    (``batch_size``, ``phase2``, ``offload``, ...)."""
    p = dict(plan, **overrides)
    common = dict(
        head=p['head'],
        frozen_dtype_bytes=p['frozen_dtype_bytes'],
        amp=p['amp'],
        fused_optimizer=p['fused_optimizer'],
        lora_rank=p['lora_rank'],
        patch_size=p['patch_size'])
    out = {}
    if p['switch_epoch'] > 0:
        out['phase 1'] = estimate_memory(
            p['arch'], p['input_hw'], p['batch_size'], 'frozen', with_cp=p['with_cp'], **common)
    ph2 = p['phase2']
    out['phase 2'] = estimate_memory(
        p['arch'],
        p['input_hw'],
        p['batch_size'],
        ph2['mode'],
        ph2['trainable_layers'],
        with_cp=ph2['with_cp'],
        offload=p['offload'] and ph2['mode'] == 'full',
        **common)
    return out


def estimate_config(cfg, **overrides) -> Dict[str, Dict[str, int]]:
    """:func:`estimate_plan` of a config (``mmengine.Config``)."""
    return estimate_plan(plan_from_config(cfg), **overrides)


def gpu_budget(gpu_total_bytes: int) -> int:
    """What :func:`estimate_memory`'s ``total`` may reach on a GPU of this size."""
    return gpu_total_bytes - SAFETY_BYTES


ROUTES = {
    'lora': dict(phase2=dict(mode='lora', trainable_layers=0, with_cp=True)),
    'last_blocks': dict(phase2=dict(mode='last_blocks', trainable_layers=2, with_cp=True)),
    'full_offload': dict(phase2=dict(mode='full', trainable_layers=-1, with_cp=True), offload=True),
    'full': dict(phase2=dict(mode='full', trainable_layers=-1, with_cp=True), offload=False),
}


def route_of_plan(plan: dict) -> str:
    mode = plan['phase2']['mode']
    return 'full_offload' if mode == 'full' and plan['offload'] else mode


def fitting_settings(plan: dict,
                     gpu_total_bytes: int,
                     batch_sizes: Sequence[int] = (8, 4, 2, 1),
                     routes: Optional[Sequence[str]] = None) -> List[dict]:
    """For each route, the largest batch (accumulation keeping the effective batch) whose
    phases fit the GPU; routes that fit nothing are listed with ``batch_size=None``."""
    budget = gpu_budget(gpu_total_bytes)
    effective = plan['batch_size'] * plan['accumulative_counts']
    out = []
    for route in routes or ROUTES:
        over = dict(ROUTES[route])
        # adapters only where the route uses them (rank 8 as stage1_gtx1650.py)
        over['lora_rank'] = (plan['lora_rank'] or 8) if route == 'lora' else 0
        row = dict(route=route, batch_size=None)
        for bs in batch_sizes:
            if effective % bs:
                continue
            est = estimate_plan(plan, batch_size=bs, **over)
            if all(e['total'] <= budget for e in est.values()):
                row.update(
                    batch_size=bs,
                    accumulative_counts=effective // bs,
                    **{
                        f'{k} total': v['total']
                        for k, v in est.items()
                    },
                    host_bytes=est['phase 2']['host_bytes'])
                break
        out.append(row)
    return out

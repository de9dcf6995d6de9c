"""Peak GPU memory estimate of Sapiens fine-tuning phases (weights, optimizer, activations).

An analytic model, used by ``tools/check_env.py`` and :class:`SapiensPhaseSwitchHook`
to say which settings fit a GPU before a run starts. ``benchmarks/sapiens_memory.py``
measures the same phases on a real GPU and prints both, so the constants below can
be checked (docs/sapiens.md lists the figures).

Counted (bytes):
- frozen parameters in their storage dtype (fp16: 2 B/param), no grads, no state;
- trainable parameters: fp32 weight + fp32 grad (4 + 4) and AdamW ``exp_avg`` +
  ``exp_avg_sq`` (4 + 4); a non-fused AdamW also allocates one fp32 temporary per
  parameter during ``step()``;
- activations kept for backward, per token and per trainable block, with AMP
  (fp16 matmuls, fp32 LayerNorm/residual stream) and an efficient attention kernel
  (no ``N×N`` matrix): ``30·C + 4·F`` bytes (C embed dims, F FFN width); with
  activation checkpointing only the block input (``4·C``) plus one block recomputed;
- the frozen prefix under ``no_grad``: one block's transient working set;
- the heatmap head (deconvs + BN + ReLU) and the input batch;
- 64 MiB cuBLAS/cuDNN workspace and 5 % allocator fragmentation.
Not counted in the allocator peak but in what a GPU must hold: the CUDA context
(``CUDA_CONTEXT_BYTES``).
"""
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

GiB = 1024**3
MiB = 1024**2
CUDA_CONTEXT_BYTES = int(0.35 * GiB)
WORKSPACE_BYTES = 64 * MiB
FRAGMENTATION = 0.05
SAFETY_BYTES = int(0.1 * GiB)


def vit_param_counts(arch: dict, grid_hw: Sequence[int], patch_size: int = 16,
                     in_channels: int = 3) -> Dict[str, int]:
    """Parameter counts of an mmpretrain ViT (qkv bias, final LN, no cls token)."""
    d, ffn, n_layers = arch['embed_dims'], arch['feedforward_channels'], arch['num_layers']
    block = (3 * d * d + 3 * d) + (d * d + d) + (d * ffn + ffn) + (ffn * d + d) + 4 * d
    stem = in_channels * patch_size * patch_size * d + d + grid_hw[0] * grid_hw[1] * d
    return dict(block=block, stem=stem, final_norm=2 * d,
                total=stem + n_layers * block + 2 * d)


def heatmap_head_params(in_channels: int, deconv_out_channels=(256, 256),
                        deconv_kernel: int = 4, num_keypoints: int = 17) -> int:
    n, c = 0, in_channels
    for out in deconv_out_channels:
        n += c * out * deconv_kernel * deconv_kernel + 2 * out  # deconv (no bias) + BN
        c = out
    return n + c * num_keypoints + num_keypoints


def estimate_phase_memory(arch: dict,
                          input_hw: Sequence[int],
                          batch_size: int,
                          trainable_layers: int,
                          frozen_dtype_bytes: int = 2,
                          amp: bool = True,
                          with_cp: bool = False,
                          fused_optimizer: bool = True,
                          patch_size: int = 16,
                          deconv_out_channels: Sequence[int] = (256, 256),
                          num_keypoints: int = 17) -> Dict[str, int]:
    """Allocator peak (bytes) of one training step, by component.

    Args:
        arch: ``embed_dims, num_layers, num_heads, feedforward_channels``.
        input_hw: network input ``(H, W)``.
        trainable_layers: -1 all, 0 frozen backbone, N last blocks (see the backbone).
        frozen_dtype_bytes: 2 for fp16/bf16 frozen weights, 4 for fp32.

    Returns:
        dict: components and ``'total'``.
    """
    d, ffn, n_layers = arch['embed_dims'], arch['feedforward_channels'], arch['num_layers']
    gh, gw = input_hw[0] // patch_size, input_hw[1] // patch_size
    counts = vit_param_counts(arch, (gh, gw), patch_size)
    act_bytes = 2 if amp else 4
    n_train = n_layers if trainable_layers < 0 else trainable_layers
    stem_trainable = trainable_layers < 0
    frozen = (n_layers - n_train) * counts['block'] + \
        (0 if stem_trainable else counts['stem']) + (counts['final_norm'] if n_train == 0 else 0)
    trainable = n_train * counts['block'] + (counts['stem'] if stem_trainable else 0) + \
        (counts['final_norm'] if n_train else 0)
    head = heatmap_head_params(d, deconv_out_channels, 4, num_keypoints)
    tokens = batch_size * gh * gw
    per_token_block = (30 * d + 4 * ffn) * act_bytes // 2
    if n_train == 0:
        block_acts = 0
    elif with_cp:
        block_acts = n_train * tokens * d * 4 + tokens * per_token_block
    else:
        block_acts = n_train * tokens * per_token_block
    frozen_transient = tokens * (8 * d + 4 * ffn) if n_train < n_layers else 0
    hh, hw = gh, gw
    head_acts = 0
    for c in deconv_out_channels:
        hh, hw = hh * 2, hw * 2
        head_acts += batch_size * c * hh * hw * (act_bytes + 4 + 4 + act_bytes)
    head_acts += batch_size * num_keypoints * hh * hw * 4 * 4  # pred, target, diff, grad
    inputs = batch_size * 3 * input_hw[0] * input_hw[1] * (4 + act_bytes)
    train_params = trainable + head
    comp = {
        'frozen weights': frozen * frozen_dtype_bytes,
        'trainable weights + grads': train_params * 8,
        'AdamW state': train_params * (8 if fused_optimizer else 12),
        'activations (backbone)': block_acts + frozen_transient
        + (tokens * d * 8 if stem_trainable else 0),
        'activations (head + input)': head_acts + inputs,
        'workspace': WORKSPACE_BYTES,
    }
    subtotal = sum(comp.values())
    comp['fragmentation'] = int(subtotal * FRAGMENTATION)
    comp['total'] = subtotal + comp['fragmentation']
    comp['params_frozen'] = frozen
    comp['params_trainable'] = train_params
    return comp


def allocator_budget(gpu_total_bytes: int) -> int:
    """What PyTorch's allocator can use on a GPU of this size."""
    return gpu_total_bytes - CUDA_CONTEXT_BYTES - SAFETY_BYTES


def suggest_settings(arch: dict,
                     gpu_total_bytes: int,
                     effective_batch: int = 32,
                     resolutions: Iterable[Tuple[int, int]] = ((384, 288), (320, 240),
                                                                (256, 192)),
                     batch_sizes: Iterable[int] = (8, 4, 2, 1),
                     max_trainable: Optional[int] = None,
                     frozen_dtype_bytes: int = 2) -> List[dict]:
    """Settings whose phase 1 and phase 2 both fit, best first.

    Preference: larger input, then more trainable blocks in phase 2 (with activation
    checkpointing), then larger batch (accumulation keeps ``effective_batch``).
    """
    budget = allocator_budget(gpu_total_bytes)
    n_layers = arch['num_layers']
    max_trainable = n_layers if max_trainable is None else max_trainable
    out = []
    for hw in resolutions:
        for n in range(max_trainable, -1, -1):
            for bs in batch_sizes:
                if effective_batch % bs:
                    continue
                p1 = estimate_phase_memory(arch, hw, bs, 0, frozen_dtype_bytes)
                p2 = estimate_phase_memory(arch, hw, bs, n, frozen_dtype_bytes,
                                           with_cp=True)
                if p1['total'] <= budget and p2['total'] <= budget:
                    out.append(dict(input_hw=hw, batch_size=bs,
                                    accumulative_counts=effective_batch // bs,
                                    trainable_layers=n if n < n_layers else -1,
                                    phase1_bytes=p1['total'], phase2_bytes=p2['total']))
                    break
    return out


def format_bytes(n: int) -> str:
    return f'{n / GiB:.2f} GiB'

"""Compute per training iteration of each Sapiens phase and phase-2 route, counted.

    python benchmarks/sapiens_flops.py [--batch-size 2] [--arch sapiens_1b]

The throughput cost of a route is mostly its arithmetic and, for the FSDP offload route,
its host<->GPU traffic. This counts the first with ``torch.utils.flop_counter`` over one
forward + backward of the real configs' model (configs/sapiens/*, 384x288), built with
fake tensors (no memory, no arithmetic: seconds on any machine), each route set up by
SapiensPhaseSwitchHook as in training (activation checkpointing included: its recomputed
forward is counted). The second is the parameter bytes FSDP moves per iteration (fp16
weights to the GPU for the forward and again for the backward, fp16 gradients back),
from the parameter count. Lower bounds of s/iter on a GTX 1650 follow from its peak rates
(fp16 5.97 TFLOP/s, PCIe 3.0 x16 15.75 GB/s); benchmarks/sapiens_memory.py measures s/iter
on a GPU.
"""
import argparse
import os
import os.path as osp
import sys

import torch

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
os.environ.setdefault('NO_ALBUMENTATIONS_UPDATE', '1')

from sapiens_memory import CONFIGS, phase_hook  # noqa: E402  (the routes' configs)

# route -> phase; the full route on the GPU alone ('full', which does not fit) is left out
ROUTES = {'phase 1': 1, 'lora': 2, 'last_blocks': 2, 'full_offload': 2}
GTX1650_FP16_TFLOPS = 5.97  # 896 CUDA cores x 1.665 GHz boost x 2 (FMA) x 2 (fp16 rate)
PCIE3_X16_GBPS = 15.75


def flop_counter():
    """``torch.utils.flop_counter.FlopCounterMode`` that also counts the CPU kernel of
    ``scaled_dot_product_attention`` (PyTorch counts only its GPU kernels) with PyTorch's
    own attention formulas, so that a count here equals one on a GPU."""
    from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

    def forward(query, key, value, *args, **kwargs):
        return sdpa_flop_count(query.shape, key.shape, value.shape)

    def backward(grad_out, query, key, value, *args, **kwargs):
        return sdpa_backward_flop_count(grad_out.shape, query.shape, key.shape, value.shape)

    forward._get_raw = backward._get_raw = True  # tensors in, as written above
    aten = torch.ops.aten
    return FlopCounterMode(
        display=False,
        custom_mapping={
            aten._scaled_dot_product_flash_attention_for_cpu: forward,
            aten._scaled_dot_product_flash_attention_for_cpu_backward: backward,
        })


def count(route: str, batch_size: int = 2, arch: str = 'sapiens_1b') -> dict:
    """FLOPs of one training iteration's forward + backward (batch ``batch_size`` at the
    config's input size) and the parameters that train, for ``route``."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmpose.registry import MODELS
    from torch._subclasses.fake_tensor import FakeTensorMode

    import keypose_ext  # noqa: F401
    init_default_scope('mmpose')
    name = CONFIGS[route]
    cfg = Config.fromfile(osp.join(ROOT, 'configs', 'sapiens', name))
    cfg.model.backbone.update(checkpoint=None, arch=arch)
    h, w = cfg.model.backbone.img_size
    fake = FakeTensorMode(allow_non_fake_inputs=True)
    with fake:
        model = MODELS.build(cfg.model)
        phase_hook(cfg).apply_phase(model, ROUTES[route])
        model.train()
        x = torch.randn(batch_size, 3, h, w)
        with flop_counter() as counter:
            heatmaps = model.head.forward(model.extract_feat(x))
            heatmaps.float().square().mean().backward()
    params = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    row = dict(
        route=route,
        config=f'configs/sapiens/{name}',
        input_hw=[h, w],
        batch_size=batch_size,
        tflop=counter.get_total_flops() / 1e12,
        trainable_m=trainable / 1e6,
        params_m=params / 1e6)
    # FSDP (one process, fp16 compute): the fp16 weights go to the GPU for the forward and
    # again for the backward (activation checkpointing recomputes inside it), and the fp16
    # gradients come back, every iteration (accumulation included)
    row['pcie_gb'] = 3 * 2 * params / 1e9 if route == 'full_offload' else 0.0
    row['min_s_per_iter_gtx1650'] = (
        row['tflop'] / GTX1650_FP16_TFLOPS + row['pcie_gb'] / PCIE3_X16_GBPS)
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--batch-size', type=int, default=2)
    p.add_argument('--arch', default='sapiens_1b')
    args = p.parse_args(argv)
    rows = [count(r, args.batch_size, args.arch) for r in ROUTES]
    base = rows[0]['tflop']
    print(f'\n{args.arch}, {rows[0]["input_hw"][0]}x{rows[0]["input_hw"][1]}, batch '
          f'{args.batch_size}: one training iteration (forward + backward), counted\n')
    print('| route | trains | TFLOP / iter | × phase 1 | host↔GPU GB / iter | '
          '≥ s/iter, GTX 1650 peak |')
    print('|---|---|---|---|---|---|')
    for r in rows:
        print(f'| {r["route"]} | {r["trainable_m"]:.1f} M | {r["tflop"]:.2f} | '
              f'{r["tflop"] / base:.2f} | {r["pcie_gb"]:.1f} | '
              f'{r["min_s_per_iter_gtx1650"]:.2f} |')
    return 0


if __name__ == '__main__':
    sys.exit(main())

"""Compute and tensor memory per training iteration of each Sapiens phase and phase-2
route, counted.

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

The same fake iteration (the second one: AdamW's state exists, as in training) also
counts the peak bytes of live tensors (weights, gradients, optimizer state, autocast
copies, activations, temporaries) next to the memory estimate without the parts no
tensor holds (cuBLAS workspace, fragmentation, CUDA context). Autocast runs on the CPU
in float16, as on the GPU; the attention kernel is the CPU one (same saved tensors).
What a GPU adds (the caching allocator's rounding and fragmentation, the context) needs
benchmarks/sapiens_memory.py; the FSDP route's GPU share is not counted here.
"""
import argparse
import os
import os.path as osp
import sys
import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.weak import WeakIdKeyDictionary

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


class LiveTensorBytes(TorchDispatchMode):
    """Counts the bytes of the tensor storages alive while it is active (each storage
    once, from the op that creates it until Python frees it) and their ``peak``; tensors
    made before it (weights) are added with :meth:`track`. Works on fake tensors."""

    def __init__(self):
        super().__init__()
        self._seen = WeakIdKeyDictionary()
        self.current = self.peak = 0

    def track(self, tensor):
        if not isinstance(tensor, torch.Tensor):
            return
        storage = tensor.untyped_storage()
        if storage in self._seen:
            return
        n = self._seen[storage] = storage.nbytes()
        self.current += n
        self.peak = max(self.peak, self.current)
        weakref.finalize(storage, self._free, n)

    def _free(self, n):
        self.current -= n

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            self.track(t)
        return out


def count(route: str, batch_size: int = 2, arch: str = 'sapiens_1b') -> dict:
    """FLOPs of one training iteration's forward + backward (batch ``batch_size`` at the
    config's input size), the parameters that train and, but for ``full_offload``, the
    peak bytes of live tensors over a whole iteration (optimizer step included) against
    the estimate's, for ``route``."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmpose.registry import MODELS
    from torch._subclasses.fake_tensor import FakeTensorMode

    import keypose_ext  # noqa: F401
    from keypose_ext.utils import sapiens_memory_estimate as mem
    init_default_scope('mmpose')
    name = CONFIGS[route]
    cfg = Config.fromfile(osp.join(ROOT, 'configs', 'sapiens', name))
    cfg.model.backbone.update(checkpoint=None, arch=arch)
    h, w = cfg.model.backbone.img_size
    plan = mem.plan_from_config(cfg)
    on_gpu_alone = route != 'full_offload'  # FSDP's optimizer lives on the host
    fake = FakeTensorMode(allow_non_fake_inputs=True)
    with fake:
        model = MODELS.build(cfg.model)
        phase_hook(cfg).apply_phase(model, ROUTES[route])
        model.train()
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad],
                                      fused=plan['fused_optimizer'])

        def iteration():
            x = torch.randn(batch_size, 3, h, w)
            with torch.autocast('cpu', dtype=torch.float16, enabled=plan['amp']):
                heatmaps = model.head.forward(model.extract_feat(x))
            heatmaps.float().square().mean().backward()
            if on_gpu_alone:
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)

        # FLOPs of the first iteration (it also creates AdamW's state), bytes of the
        # second: apart, as the flop counter keeps tensors alive.
        with flop_counter() as counter:
            iteration()
        live = LiveTensorBytes()
        if on_gpu_alone:
            for t in [*model.parameters(), *model.buffers(), *tree_leaves(optimizer.state)]:
                live.track(t)  # what lives before the iteration
            with live:
                iteration()
    params = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    row = dict(
        route=route,
        config=f'configs/sapiens/{name}',
        input_hw=[h, w],
        batch_size=batch_size,
        tflop=counter.get_total_flops() / 1e12,
        trainable_m=trainable / 1e6,
        params_m=params / 1e6,
        tensor_peak_gib=None,
        estimate_tensors_gib=None)
    if on_gpu_alone:
        est = mem.estimate_config(cfg, batch_size=batch_size)[f'phase {ROUTES[route]}']
        row.update(
            tensor_peak_gib=live.peak / mem.GiB,
            estimate_tensors_gib=(est['allocated'] - est['workspace']) / mem.GiB)
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
          '≥ s/iter, GTX 1650 peak | tensor peak GiB | estimate GiB |')
    print('|---|---|---|---|---|---|---|---|')
    for r in rows:
        mem = ('–', '–') if r['tensor_peak_gib'] is None else (f'{r["tensor_peak_gib"]:.2f}',
                                                               f'{r["estimate_tensors_gib"]:.2f}')
        print(f'| {r["route"]} | {r["trainable_m"]:.1f} M | {r["tflop"]:.2f} | '
              f'{r["tflop"] / base:.2f} | {r["pcie_gb"]:.1f} | '
              f'{r["min_s_per_iter_gtx1650"]:.2f} | {mem[0]} | {mem[1]} |')
    return 0


if __name__ == '__main__':
    sys.exit(main())

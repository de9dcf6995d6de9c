"""The Sapiens benchmark scripts: Meta's file structure, and the memory benchmark's code
path on the CPU at a tiny size (the figures themselves need a GPU)."""
import importlib.util
import json
import os.path as osp

import pytest
import torch
from sapiens_test_utils import ROOT


def _script(name):
    spec = importlib.util.spec_from_file_location(name, osp.join(ROOT, 'benchmarks', f'{name}.py'))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_make_torchscript_has_meta_structure(tmp_path):
    ts = str(tmp_path / 'tiny_torchscript.pt2')
    _script('make_sapiens_torchscript').main(
        ['--arch', 'tiny', '--img-size', '64', '--out', ts, '--device', 'cpu'])
    traced = torch.jit.load(ts)
    keys = traced.state_dict()
    # MAE: cls token + its position, the decoder under neck.*, preprocessor buffers
    assert keys['backbone.pos_embed'].shape == (1, 1 + 4 * 4, 64)
    assert 'backbone.cls_token' in keys and 'neck.mask_token' in keys
    assert any(k.startswith('neck.decoder_blocks.') for k in keys)
    assert any(k.startswith('data_preprocessor.') for k in keys)
    out = traced(torch.randn(1, 3, 64, 64))
    assert isinstance(out, tuple) and len(out) == 1 and out[0].shape == (1, 64, 4, 4)


def test_memory_benchmark_skips_without_cuda(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    assert _script('sapiens_memory').main(['--out', str(tmp_path / 'r.json')]) == 0
    assert 'needs CUDA; skipped' in capsys.readouterr().out
    assert not (tmp_path / 'r.json').exists()


def _cpu_run(tmp_path, routes):
    out = tmp_path / 'r.json'
    rc = _script('sapiens_memory').main([
        '--tiny', '--allow-cpu', '--iters', '2', '--batch-size', '1', '--out',
        str(out), '--routes', *routes
    ])
    res = json.loads(out.read_text())
    assert rc == 0
    assert all(r['input_hw'] == [384, 288] and r['batch_size'] == 1 for r in res['rows'])
    assert all(r['estimate_total_gib'] > 0 for r in res['rows'])
    return {r['route']: r for r in res['rows']}


@pytest.mark.skipif(torch.cuda.is_available(), reason='the GPU run is the real benchmark')
def test_memory_benchmark_code_path_on_cpu(tmp_path):
    rows = _cpu_run(tmp_path, ['lora', 'full_offload'])
    assert rows['lora']['status'] == 'ok' and rows['lora']['phase'] == 'phase 2'
    assert rows['full_offload']['status'] == 'ok'  # FSDP on the CPU (no offload, fp32)
    assert rows['full_offload']['s_per_iter'] > 0


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason='the GPU run is the real benchmark')
def test_memory_benchmark_every_route_on_cpu(tmp_path):
    rows = _cpu_run(tmp_path, ['phase 1', 'lora', 'last_blocks', 'full', 'full_offload'])
    assert list(rows) == ['phase 1', 'lora', 'last_blocks', 'full', 'full_offload']
    assert all(r['status'] == 'ok' for r in rows.values())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_tiny_measurement_on_gpu(tmp_path):
    out = tmp_path / 'r.json'
    rc = _script('sapiens_memory').main(['--tiny', '--iters', '2', '--out', str(out)])
    res = json.loads(out.read_text())
    assert rc == 0 and res['cuda_context_gib'] > 0
    assert all('max_allocated_gib' in r for r in res['rows'] if r['status'] == 'ok')


def test_flop_count_of_the_vit_equals_its_arithmetic():
    """sapiens_flops.py's counter (PyTorch's, plus the CPU attention kernel) on the real
    Sapiens-1B backbone at 384x288, batch 2 (fake tensors: no memory, no arithmetic),
    against the ViT's multiply-adds written out: per image, patch embedding
    2·N·(3·16²)·D, and per block 2·N·(4·D² + 2·D·F) for qkv/proj/fc1/fc2 plus
    4·N²·D for the attention products."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmpose.registry import MODELS
    from torch._subclasses.fake_tensor import FakeTensorMode

    from keypose_ext.utils.sapiens_archs import SAPIENS_ARCHS
    flops = _script('sapiens_flops')
    init_default_scope('mmpose')
    cfg = Config.fromfile(osp.join(ROOT, 'configs', 'sapiens', 'stage1_gtx1650.py'))
    cfg.model.backbone.update(checkpoint=None, lora=None, frozen_dtype=None)
    with FakeTensorMode(allow_non_fake_inputs=True):
        backbone = MODELS.build(cfg.model.backbone)
        x = torch.randn(2, 3, 384, 288)
        with flops.flop_counter() as counter, torch.no_grad():
            backbone(x)
    a = SAPIENS_ARCHS['sapiens_1b']
    d, f, depth, p = a['embed_dims'], a['feedforward_channels'], a['num_layers'], 16
    n = (384 // p) * (288 // p)
    per_image = 2 * n * 3 * p * p * d + depth * (2 * n * (4 * d * d + 2 * d * f) + 4 * n * n * d)
    assert counter.get_total_flops() == 2 * per_image


@pytest.fixture(scope='module')
def route_counts():
    """sapiens_flops.py's rows for every route (Sapiens-1B, 384x288, batch 2; ~20 s)."""
    flops = _script('sapiens_flops')
    return {r: flops.count(r) for r in flops.ROUTES}


def test_flops_per_route_follow_backprop_arithmetic(route_counts):
    """Against a forward pass F (phase 1: frozen backbone, no backward through it):
    LoRA ≈ 3F (forward, checkpoint recompute, input gradients), last 2 of 40 blocks
    ≈ F + 2/40·2F, full ≈ 3.5–4F (forward, recompute, input and weight gradients; the
    recompute stops before the last linear layer of each block), and FSDP moves
    3 × 2 bytes per parameter across PCIe."""
    rows = route_counts
    f = rows['phase 1']['tflop']
    assert 1.9 < f < 2.3  # 2.05 TFLOP of backbone forward + the head
    assert 2.7 < rows['lora']['tflop'] / f < 3.2
    assert 1.05 < rows['last_blocks']['tflop'] / f < 1.2
    full = rows['full_offload']
    assert 3.4 < full['tflop'] / f < 4.1
    assert full['pcie_gb'] == pytest.approx(6 * full['params_m'] * 1e6 / 1e9)
    assert rows['lora']['pcie_gb'] == 0 and full['trainable_m'] == full['params_m']


def test_live_tensor_bytes_follow_allocations_and_frees():
    """The counter against bytes written out: fp32 (1024, 1024) tensors of 4 MiB each,
    a view shares its storage, a freed tensor leaves the count; on fake tensors."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    flops = _script('sapiens_flops')
    mib4 = 4 * 2**20
    with FakeTensorMode():
        live = flops.LiveTensorBytes()
        w = torch.randn(1024, 1024)
        live.track(w)
        with live:
            a = w * 2
            b = a.view(-1)  # no new storage
            c = a + 1
            assert live.current == 3 * mib4
            del a, b, c
            d = torch.zeros(1024, 512, dtype=torch.float16)  # 1 MiB
        assert live.current == mib4 + 2**20 and live.peak == 3 * mib4
        del d


def test_memory_estimate_bounds_the_counted_tensor_peak(route_counts):
    """The estimate of each single-GPU route, without what no tensor holds (workspace,
    fragmentation, CUDA context), against the peak of live tensors counted over a real
    training iteration of Sapiens-1B at 384x288, batch 2 (AdamW state present): never
    below it and at most 10 % above (the estimate's own rounding up)."""
    for route, row in route_counts.items():
        if route == 'full_offload':
            assert row['tensor_peak_gib'] is None  # FSDP's optimizer is on the host
            continue
        ratio = row['estimate_tensors_gib'] / row['tensor_peak_gib']
        assert 1.0 <= ratio <= 1.10, (route, row['tensor_peak_gib'], row['estimate_tensors_gib'])
    # the routes' order holds in the count too: last 2 blocks (fp32 weights and AdamW)
    # > LoRA (activations through every block, checkpointed) > phase 1
    peak = {r: route_counts[r]['tensor_peak_gib'] for r in ('phase 1', 'lora', 'last_blocks')}
    assert peak['phase 1'] < peak['lora'] < peak['last_blocks']

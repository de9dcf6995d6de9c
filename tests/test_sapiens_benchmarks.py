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

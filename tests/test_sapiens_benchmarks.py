"""The GPU memory benchmark scripts must at least run on a CPU with a tiny arch."""
import importlib.util
import json
import os.path as osp

import pytest
import torch
from sapiens_test_utils import ROOT


def _script(name):
    spec = importlib.util.spec_from_file_location(
        name, osp.join(ROOT, 'benchmarks', f'{name}.py'))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_make_torchscript_then_measure_both_phases(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    ts = str(tmp_path / 'tiny_torchscript.pt2')
    _script('make_sapiens_torchscript').main(
        ['--arch', 'tiny', '--img-size', '64', '--out', ts, '--device', 'cpu'])
    traced = torch.jit.load(ts)
    out = traced(torch.randn(1, 3, 64, 64))
    assert isinstance(out, tuple) and out[0].shape == (1, 64, 4, 4)  # like Meta's 1-tuple
    result_path = tmp_path / 'r.json'
    rc = _script('sapiens_memory').main(
        ['--checkpoint', ts, '--tiny', '--iters', '1', '--phase2-layers', '1', '--no-val',
         '--out', str(result_path), '--cfg-options', 'optim_wrapper.accumulative_counts=1'])
    res = json.loads(result_path.read_text())
    assert rc == 0
    assert [p['name'] for p in res['phases']] == ['phase 1 (frozen)',
                                                  'phase 2 (trainable_layers=1)']
    assert all(p['status'] == 'ok' and p['estimate_gib'] > 0 for p in res['phases'])


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_tiny_measurement_on_gpu(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    ts = str(tmp_path / 'tiny.pt2')
    _script('make_sapiens_torchscript').main(['--arch', 'tiny', '--img-size', '64',
                                              '--out', ts])
    rc = _script('sapiens_memory').main(['--checkpoint', ts, '--tiny', '--limit-gib', '4',
                                         '--out', str(tmp_path / 'r.json')])
    res = json.loads((tmp_path / 'r.json').read_text())
    assert rc == 0 and all('max_allocated_gib' in p for p in res['phases'])

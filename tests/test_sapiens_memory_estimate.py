import importlib.util
import json
import os.path as osp

import pytest
from sapiens_test_utils import ROOT

from keypose_ext.models.backbones.sapiens_torchscript_backbone import SAPIENS_ARCHS
from keypose_ext.utils import sapiens_memory_estimate as mem

ARCH = SAPIENS_ARCHS['sapiens_1b']


def test_sapiens_1b_size():
    counts = mem.vit_param_counts(ARCH, (24, 18))
    assert counts['total'] / 1e9 == pytest.approx(1.13, abs=0.01)
    assert counts['total'] * 4 / 1e9 == pytest.approx(4.5, abs=0.1)  # fp32 bytes


def test_estimates_move_the_right_way():
    e = lambda *a, **k: mem.estimate_phase_memory(ARCH, *a, **k)['total']  # noqa: E731
    assert e((384, 288), 2, 0) < e((384, 288), 2, 1) < e((384, 288), 2, 2)
    assert e((384, 288), 2, 2) < e((384, 288), 4, 2) and e((320, 240), 2, 2) < e((384, 288), 2, 2)
    assert e((384, 288), 8, 4, with_cp=True) < e((384, 288), 8, 4, with_cp=False)
    assert e((384, 288), 2, 0, frozen_dtype_bytes=4) > e((384, 288), 2, 0) + 2 * mem.GiB
    full = mem.estimate_phase_memory(ARCH, (384, 288), 2, -1, 4)
    assert full['frozen weights'] == 0
    assert full['AdamW state'] == pytest.approx(8 * 1.134e9, rel=0.02)


def test_suggestions_for_4gb_and_too_small():
    sug = mem.suggest_settings(ARCH, 4 * mem.GiB, resolutions=[(384, 288)])
    assert sug and all(s['phase2_bytes'] <= mem.allocator_budget(4 * mem.GiB) for s in sug)
    assert sug[0]['trainable_layers'] == 2 and sug[0]['batch_size'] * \
        sug[0]['accumulative_counts'] == 32
    assert mem.suggest_settings(ARCH, 2 * mem.GiB) == []  # fp16 weights alone are 2.1 GiB


def _check_env():
    spec = importlib.util.spec_from_file_location(
        'check_env', osp.join(ROOT, 'tools', 'check_env.py'))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_check_env_reports_phases_and_fixes(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    tool = _check_env()
    assert tool.main(['--gpu-mem-gib', '4']) == 0
    out = capsys.readouterr().out
    assert 'phase 1 (frozen backbone): ~2.' in out and 'phase 2 (fine-tuning): ~3.' in out
    assert 'DOES NOT FIT' not in out and 'settings that fit' in out
    assert '--cfg-options train_dataloader.batch_size=' in out
    assert tool.main(['--gpu-mem-gib', '3', '--config',
                      'configs/sapiens/stage1_gtx1650.py']) == 1
    out = capsys.readouterr().out
    assert 'phase 2 (fine-tuning): ~3.34 GiB peak DOES NOT FIT' in out
    assert 'configs/sapiens/stage1_minimal.py' in out or 'trains 1 block' in out
    assert tool.main(['--gpu-mem-gib', '4', '--json', '--config',
                      'configs/sapiens/stage1_a100.py']) == 1
    report = json.loads(capsys.readouterr().out)
    assert report['fits'] == {'phase 1 (frozen backbone)': False,
                              'phase 2 (fine-tuning)': False}
    assert any('download_coco.py' in line for line in report['data']) or \
        all(line.startswith('ok') for line in report['data'])

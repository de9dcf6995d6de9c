import importlib.util
import json
import os.path as osp

import pytest
from mmengine.config import Config
from sapiens_test_utils import ROOT

from keypose_ext.utils import sapiens_memory_estimate as mem
from keypose_ext.utils.sapiens_archs import SAPIENS_ARCHS

ARCH = SAPIENS_ARCHS['sapiens_1b']
HEAD = dict(
    deconv_out_channels=(256, 256),
    deconv_kernel_sizes=(4, 4),
    conv_out_channels=(),
    conv_kernel_sizes=(),
    out_channels=17)


def _cfg(name):
    return Config.fromfile(osp.join(ROOT, 'configs', 'sapiens', name))


def test_sapiens_1b_size():
    counts = mem.vit_param_counts(ARCH, (24, 18))
    assert counts['total'] / 1e9 == pytest.approx(1.13, abs=0.01)
    assert counts['total'] * 4 / 1e9 == pytest.approx(4.5, abs=0.1)  # fp32 bytes
    # rank-8 adapters on qkv, proj, fc1, fc2 of 40 blocks
    assert 40 * mem.lora_params_per_block(ARCH, 8) == 40 * 8 * ((1536 + 4608) + (1536 + 1536) +
                                                                (1536 + 6144) + (6144 + 1536))


def test_estimates_move_the_right_way_and_count_context_and_autocast():

    def e(*a, **k):
        return mem.estimate_memory(ARCH, *a, head=HEAD, **k)['total']

    hw = (384, 288)
    assert e(hw, 2, 'frozen') < e(hw, 2, 'last_blocks', 1) < e(hw, 2, 'last_blocks', 2)
    assert e(hw, 2, 'last_blocks', 2) < e(hw, 4, 'last_blocks', 2)
    assert e((320, 240), 2, 'lora', lora_rank=8) < e(hw, 2, 'lora', lora_rank=8)
    assert e(hw, 8, 'last_blocks', 4, with_cp=True) < e(hw, 8, 'last_blocks', 4)
    assert e(hw, 2, 'frozen', frozen_dtype_bytes=4) > e(hw, 2, 'frozen') + 2 * mem.GiB
    full = mem.estimate_memory(ARCH, hw, 2, 'full', frozen_dtype_bytes=4, head=HEAD)
    assert full['frozen weights'] == 0 and full['CUDA context'] == mem.CUDA_CONTEXT_BYTES
    assert full['AdamW state'] == pytest.approx(8 * 1.141e9, rel=0.02)
    assert full['autocast fp16 weight copies'] == full['params_trainable'] * 2
    assert full['total'] == full['reserved'] + mem.CUDA_CONTEXT_BYTES
    # LoRA back-propagates through all 40 blocks: more activations than 2 blocks
    lora = mem.estimate_memory(ARCH, hw, 2, 'lora', lora_rank=8, with_cp=True, head=HEAD)
    last2 = mem.estimate_memory(ARCH, hw, 2, 'last_blocks', 2, with_cp=True, head=HEAD)
    assert lora['activations (backbone)'] > last2['activations (backbone)']
    assert lora['params_trainable'] < last2['params_trainable'] / 3
    off = mem.estimate_memory(ARCH, hw, 2, 'full', offload=True, with_cp=True, head=HEAD)
    assert off['total'] < 2 * mem.GiB and off['host_bytes'] == pytest.approx(16 * 1.148e9, rel=0.02)


def test_plan_is_read_from_the_config():
    plan = mem.plan_from_config(_cfg('stage1_gtx1650.py'))
    assert plan['input_hw'] == (384, 288) and plan['batch_size'] == 2
    assert plan['accumulative_counts'] == 16 and plan['amp'] and plan['fused_optimizer']
    assert plan['phase2'] == dict(mode='lora', trainable_layers=0, with_cp=True)
    assert plan['lora_rank'] == 8 and plan['head']['deconv_out_channels'] == (256, 256)
    # a head the config changes changes the estimate (nothing hard-coded)
    cfg = _cfg('stage1_gtx1650.py')
    cfg.model.head.deconv_out_channels = (768, 768)
    cfg.model.head.conv_out_channels, cfg.model.head.conv_kernel_sizes = (768, 768), (1, 1)
    assert mem.estimate_config(cfg)['phase 1']['total'] > \
        mem.estimate_plan(plan)['phase 1']['total'] + 0.2 * mem.GiB
    off = mem.plan_from_config(_cfg('td-hm_sapiens-1b-fsdp-offload_1xb2-100e_coco-384x288.py'))
    assert off['offload'] and off['switch_epoch'] == 0 and mem.route_of_plan(off) == \
        'full_offload'
    assert list(mem.estimate_plan(off)) == ['phase 2']


def test_4gb_routes():
    budget = mem.gpu_budget(4 * mem.GiB)
    for name in ('stage1_gtx1650.py', 'td-hm_sapiens-1b_1xb1-110e_coco-320x240.py',
                 'td-hm_sapiens-1b-last2_1xb2-110e_coco-384x288.py',
                 'td-hm_sapiens-1b-fsdp-offload_1xb2-100e_coco-384x288.py'):
        assert all(e['total'] <= budget for e in mem.estimate_config(_cfg(name)).values()), \
            name
    assert mem.estimate_config(
        _cfg('td-hm_sapiens-1b_1xb32-110e_coco-512x384.py'))['phase 2']['total'] > 4 * budget
    rows = {
        r['route']: r
        for r in mem.fitting_settings(mem.plan_from_config(_cfg('stage1_gtx1650.py')), 4 * mem.GiB)
    }
    assert rows['lora']['batch_size'] >= 2 and rows['full']['batch_size'] is None
    assert rows['full_offload']['host_bytes'] > 16 * mem.GiB
    assert all(r['batch_size'] * r['accumulative_counts'] == 32 for r in rows.values()
               if r['batch_size'])
    assert mem.fitting_settings(
        mem.plan_from_config(_cfg('stage1_gtx1650.py')), 2 * mem.GiB,
        routes=['lora'])[0]['batch_size'] is None


def _check_env():
    spec = importlib.util.spec_from_file_location('check_env',
                                                  osp.join(ROOT, 'tools', 'check_env.py'))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_check_env_reports_routes_and_measured_figures(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(ROOT)
    tool = _check_env()
    measured = tmp_path / 'measured.json'
    measured.write_text(
        json.dumps(
            dict(
                gpu='NVIDIA H200',
                limit_gib=4,
                cuda_context_gib=0.5,
                rows=[
                    dict(
                        route='lora',
                        phase='phase 2',
                        batch_size=4,
                        arch='sapiens_1b',
                        input_hw=[384, 288],
                        status='ok',
                        max_reserved_gib=2.9,
                        s_per_iter=0.4)
                ])))
    assert tool.main(['--gpu-mem-gib', '4', '--measured', str(measured)]) == 0
    out = capsys.readouterr().out
    assert "phase-2 route 'lora'" in out and 'phase 1: ~2.' in out and 'phase 2: ~3.' in out
    assert 'DOES NOT FIT' not in out and 'CUDA context' in out
    assert 'lora          batch 4 x 8' in out
    assert 'measured 2.90 GiB reserved + 0.50 context = 3.40 GiB (NVIDIA H200' in out
    assert 'full_offload' in out and 'host ~17.' in out
    assert 'full          does not fit' in out
    assert tool.main(['--gpu-mem-gib', '3', '--measured', str(tmp_path / 'none.json')]) == 1
    assert 'phase 2: ~3.22 GiB DOES NOT FIT' in capsys.readouterr().out
    assert tool.main([
        '--gpu-mem-gib', '4', '--json', '--config',
        'configs/sapiens/td-hm_sapiens-1b_1xb32-110e_coco-512x384.py'
    ]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report['fits'] == {'phase 1': False, 'phase 2': False} and report['route'] == 'full'
    assert any('download_coco.py' in line for line in report['data']) or \
        all(line.startswith('ok') for line in report['data'])


MEASURED = osp.join(ROOT, 'benchmarks', 'results', 'sapiens_memory.json')


def _check_against_measured(res):
    """Each measured row's estimate (computed by sapiens_memory.py from the config it
    measured) within 20 % or 0.35 GiB of the measured reserved memory + CUDA context, and
    no estimate that says 'fits' where the card did not."""
    rows = [r for r in res['rows'] if r.get('status') == 'ok' and 'max_reserved_gib' in r]
    assert rows, 'the results hold no measured row'
    context = res.get('cuda_context_gib') or 0
    limit = res.get('limit_gib', 4.0)
    for r in rows:
        measured = r['max_reserved_gib'] + context
        assert abs(r['estimate_total_gib'] - measured) <= max(0.35, 0.2 * measured), r
        assert r['fits_card'] or r['estimate_total_gib'] > limit, r


def test_the_measured_check_fails_on_a_wrong_estimate():
    row = dict(status='ok', max_reserved_gib=2.5, estimate_total_gib=3.0, fits_card=True)
    res = dict(rows=[row], cuda_context_gib=0.5, limit_gib=4.0)
    _check_against_measured(res)
    for bad in (dict(estimate_total_gib=2.0), dict(estimate_total_gib=3.3, fits_card=False)):
        with pytest.raises(AssertionError):
            _check_against_measured(dict(res, rows=[dict(row, **bad)]))


@pytest.mark.skipif(
    not osp.isfile(MEASURED),
    reason='no GPU figures committed yet: benchmarks/device/run_suite.sh writes them')
def test_estimates_agree_with_the_measured_figures():
    with open(MEASURED) as f:
        _check_against_measured(json.load(f))


def _saved_activation_bytes(backbone, batch_size, amp):
    """Bytes of the activations autograd keeps for backward after a forward of the backbone
    (parameters and their autocast copies included: callers difference them away)."""
    import torch
    storages = {}

    def pack(t):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    h, w = backbone.patch_resolution
    x = torch.randn(batch_size, 3, h * 16, w * 16)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        with torch.autocast('cpu', dtype=torch.bfloat16, enabled=amp):
            backbone(x)
    return sum(storages.values())


@pytest.mark.parametrize('amp,with_cp', [(True, False), (False, False), (True, True)])
def test_block_activations_are_what_autograd_saves(amp, with_cp):
    """The estimator's activations per image and per block that needs gradients equal the
    bytes autograd saves for the backbone's real block at Sapiens-1B width (C 1536, F 6144,
    24 heads), counted on the CPU (bf16 autocast stands for fp16: both 2 bytes; SDPA keeps
    no N×N matrix on either device). Differencing 2 against 1 trainable block and batch 2
    against 1 cancels the weights, their autocast copies, the stem and the final norm."""
    from keypose_ext.models.backbones import SapiensTorchScriptBackbone
    arch = dict(ARCH, num_layers=3)
    grid = (4, 3)  # tokens per image; the count is linear in them
    backbone = SapiensTorchScriptBackbone(
        arch=arch,
        img_size=(grid[0] * 16, grid[1] * 16),
        frozen_dtype='bfloat16' if amp else None,
        with_cp=with_cp,
        verify_on_load=False).train()
    measured = {}
    for n in (1, 2):
        backbone.set_trainable_layers(n)
        for b in (1, 2):
            measured[n, b] = _saved_activation_bytes(backbone, b, amp)
    saved = (measured[2, 2] - measured[1, 2]) - (measured[2, 1] - measured[1, 1])

    def est(n, b):
        return mem.estimate_memory(
            arch, (grid[0] * 16, grid[1] * 16),
            b,
            'last_blocks',
            n,
            head=HEAD,
            amp=amp,
            with_cp=with_cp)['activations (backbone)']

    estimated = (est(2, 2) - est(1, 2)) - (est(2, 1) - est(1, 1))
    tokens = grid[0] * grid[1]
    assert saved > 0 and estimated == pytest.approx(saved, rel=0.02), \
        (saved / tokens / arch['embed_dims'], estimated / tokens / arch['embed_dims'])

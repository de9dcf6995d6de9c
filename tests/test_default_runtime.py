"""Every shipped config inherits configs/_base_/default_runtime.py's runtime: a seed,
the kill-safe checkpoint hook, the non-finite loss guard and KeyposeRunner."""
import glob
import os.path as osp

import pytest
from mmengine.config import Config

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIGS = sorted(
    p for p in glob.glob(osp.join(ROOT, 'configs', '**', '*.py'), recursive=True)
    if '_base_' not in p)


def test_configs_found():
    assert len(CONFIGS) >= 10


@pytest.mark.parametrize('path', CONFIGS, ids=lambda p: osp.relpath(p, ROOT))
def test_config_runtime(path):
    cfg = Config.fromfile(path)
    assert isinstance(cfg.get('randomness', {}).get('seed'), int), 'not seeded'
    hooks = cfg.default_hooks
    assert hooks.checkpoint.type == 'KeyposeCheckpointHook'
    assert hooks.non_finite_loss.type == 'NonFiniteLossHook'
    assert cfg.get('runner_type') in ('mmpose.KeyposeRunner', 'FlexibleRunner')
    if cfg.optim_wrapper.get('type') == 'AmpOptimWrapper':  # mmengine's: refuses CPUs
        pytest.fail('uses AmpOptimWrapper; use CpuFallbackAmpOptimWrapper')

"""``import keypose_ext`` changes no upstream behaviour.

Two fresh interpreters build the same stock MMPose config, one after ``import
keypose_ext``; they must agree on the runner's hooks and optim wrapper, the registered
classes behind the stock names, the file backend of local paths and what
``torch.load`` accepts.
"""
import json
import os.path as osp
import subprocess
import sys

import mmpose

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
STOCK = osp.join(
    osp.dirname(mmpose.__file__), '.mim', 'configs', 'body_2d_keypoint', 'topdown_heatmap', 'coco',
    'td-hm_res50_8xb64-210e_coco-256x192.py')

PROBE = r'''
import json, os, sys, warnings
warnings.filterwarnings('ignore')
if sys.argv[1] == 'with':
    import keypose_ext  # noqa: F401
import numpy as np
import torch
from mmengine.config import Config
from mmengine.fileio import get_file_backend
from mmengine.runner import Runner
from mmpose.registry import HOOKS, LOOPS, OPTIM_WRAPPERS, RUNNERS

work = sys.argv[2]
cfg = Config.fromfile(sys.argv[3])
cfg.work_dir = work
cfg.log_level = 'WARNING'
cfg.model.backbone.init_cfg = None  # no download
runner = Runner.from_cfg(cfg)
out = dict(hooks=[type(h).__module__ + '.' + type(h).__name__ for h in runner.hooks])
out['optim_wrapper'] = type(runner.build_optim_wrapper(cfg.optim_wrapper)).__module__
try:
    runner.build_optim_wrapper(dict(cfg.optim_wrapper, type='AmpOptimWrapper'))
    out['amp'] = 'built'
except Exception as e:
    out['amp'] = type(e).__name__
qual = lambda c: c.__module__ + '.' + c.__qualname__  # noqa: E731
out['names'] = [qual(r.get(n)) for r, n in (
    (OPTIM_WRAPPERS, 'AmpOptimWrapper'), (OPTIM_WRAPPERS, 'OptimWrapper'),
    (HOOKS, 'CheckpointHook'), (LOOPS, 'EpochBasedTrainLoop'), (RUNNERS, 'Runner'))]
out['backend'] = [qual(type(get_file_backend(p))) for p in (work + '/x.pth', 'x.pth')]
out['backend_args'] = qual(type(get_file_backend(work, backend_args=cfg.backend_args)))
# torch allow-lists its own types (DTensor, ...) when those modules are imported
out['safe_globals'] = sorted(str(g) for g in torch.serialization.get_safe_globals()
                             if not getattr(g, '__module__', '').startswith('torch'))
torch.save({'meta': {'x': np.arange(3)}}, work + '/np.pth')
try:
    torch.load(work + '/np.pth')
    out['torch_load'] = 'loaded'
except Exception as e:
    out['torch_load'] = type(e).__name__
print('RESULT ' + json.dumps(out))
'''


def _probes(tmp_path, *modes):
    procs = []
    for mode in modes:  # side by side: each interpreter spends ~8 s importing mmpose
        (tmp_path / mode).mkdir()
        procs.append(
            subprocess.Popen([sys.executable, '-c', PROBE, mode,
                              str(tmp_path / mode), STOCK],
                             cwd=ROOT,
                             stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE,
                             text=True))
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
        line = [ln for ln in out.splitlines() if ln.startswith('RESULT ')][-1]
        results.append(json.loads(line[len('RESULT '):]))
    return results


def test_stock_config_builds_the_same_with_and_without_keypose_ext(tmp_path):
    without, with_ = _probes(tmp_path, 'without', 'with')
    assert with_ == without
    # and what stock means here
    assert without['torch_load'] == 'UnpicklingError'  # torch >= 2.6: weights_only
    assert without['backend'][0].endswith('LocalBackend')
    assert without['names'][0] == 'mmengine.optim.optimizer.amp_optimizer_wrapper.' \
        'AmpOptimWrapper'

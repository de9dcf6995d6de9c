"""benchmarks/device/: the kit for the lent GPU machine keeps the versions the project is
tested with, and run_suite.sh runs the suite as that machine does."""
import json
import os
import os.path as osp
import re
import subprocess
import sys

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def _pins(path):
    """{package: version} of every ``name==version`` in a shell script."""
    text = open(osp.join(ROOT, path)).read()
    return {
        m.group(1).lower().replace('_', '-'): m.group(2)
        for m in re.finditer(r'([A-Za-z0-9_.-]+)==([0-9][0-9A-Za-z.]*)', text)
    }


def test_kit_pins_the_versions_setup_env_installs():
    kit, env = _pins('benchmarks/device/build_kit.sh'), _pins('tools/setup_env.sh')
    # torch/torchvision: the device image's own release, by design
    common = set(kit) & set(env) - {'torch', 'torchvision'}
    assert {
        'mmengine', 'mmpose', 'mmpretrain', 'mmdet', 'albumentations', 'albucore', 'setuptools',
        'mmcv'
    } <= common
    assert {k: kit[k] for k in common} == {k: env[k] for k in common}


def test_device_script_runs_the_suite_and_brings_back_few_flat_files(tmp_path):
    """benchmarks/device/run_suite.sh, as the lent GPU machine runs it, here with this
    interpreter's packages (no kit) and --cpu-smoke: the stack check, the suite, and at
    most 8 files in $OUT with no folder (what the device tool brings back)."""
    out = tmp_path / 'out'
    env = dict(
        os.environ,
        OUT=str(out),
        PYTHON=sys.executable,
        KEYPOSE_DEVICE_KIT=str(tmp_path / 'no_kit'))
    res = subprocess.run([
        'bash',
        osp.join(ROOT, 'benchmarks', 'device', 'run_suite.sh'), '--cpu-smoke', '--steps', 'a'
    ],
                         capture_output=True,
                         text=True,
                         env=env,
                         timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert 'mmcv.ops, mmpose.models and keypose_ext import' in res.stdout
    files = sorted(p.name for p in out.iterdir())
    assert {'gpu_suite.json', 'gpu_suite.md', 'run.log', 'check_env.txt', 'suite_all.tgz'
            } <= set(files) and len(files) <= 8
    assert all(p.is_file() for p in out.iterdir())
    steps = json.loads((out / 'gpu_suite.json').read_text())['steps']
    assert steps['bottle_e2e']['status'] == 'ok'

"""benchmarks/gpu_suite.py works end to end (--cpu-smoke: every step at tiny sizes on the
CPU) and stops a step at its time limit."""
import importlib.util
import json
import os.path as osp
import time

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def _suite():
    spec = importlib.util.spec_from_file_location('gpu_suite',
                                                  osp.join(ROOT, 'benchmarks', 'gpu_suite.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cpu_smoke_runs_every_step(tmp_path, capsys):
    suite = _suite()
    rc = suite.main(['--cpu-smoke', '--out', str(tmp_path)])
    out = capsys.readouterr().out
    summary = json.loads((tmp_path / 'gpu_suite.json').read_text())
    steps = summary['steps']
    assert rc == 0, json.dumps(steps, indent=1)[:3000]
    assert set(steps) == {
        'gpu_check', 'bottle_e2e', 'plain_loop', 'ddp_2gpu', 'sapiens_1b_memory', 'cape_throughput'
    }
    assert steps['ddp_2gpu']['status'] == 'skipped'  # no 2 GPUs here
    a, b = steps['bottle_e2e'], steps['plain_loop']
    assert a['fast_path'] and a['epochs'] == 3 and a['images_per_s'] > 0
    assert a['final_loss'] < a['final_epoch_mean_loss'] * 10
    assert a['plain_path']['epochs'] == 2 and a['fast_path_gain'] > 0  # the Runner's plain path
    assert 'bf16_channels_last' not in b and b['ratio_a_over_b'] > 0
    assert steps['cape_throughput']['decode'][-1]['num_keypoints'] == 8
    assert steps['sapiens_1b_memory']['phases'][0]['status'] == 'ok'
    for letter in 'abcde':
        assert f'RESULT {letter} ' in out
    table = (tmp_path / 'gpu_suite.md').read_text()
    assert table.count('\n| ') == 6 and 'budget' in table  # GPU check + a..e


def test_a_step_is_stopped_at_its_limit(tmp_path):
    suite = _suite()
    ctx = dict(out=str(tmp_path), work=str(tmp_path), cpu_smoke=True, results={}, sleep_s=60)
    t = time.perf_counter()
    r = suite._run_step('selftest_sleep', ctx, limit=2)  # a child process
    assert r['status'] == 'timeout' and time.perf_counter() - t < 30
    suite.STEP_FUNCS['inprocess_sleep'] = suite.step_selftest_sleep
    r = suite._run_step('inprocess_sleep', dict(ctx, sleep_s=20), limit=1)  # SIGALRM
    assert r['status'] == 'timeout' and r['seconds'] < 10

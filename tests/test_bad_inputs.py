"""Bad input across the three workflows and the tools: one clear line, no traceback, and
nothing half-written on disk.

Each case runs a tool's ``main`` in this process under ``run_main`` (as the command line
does, without paying ~8 s per interpreter for importing mmpose), with a bad config,
checkpoint, data set, folder or argument. It must exit with the tool's error status and
end stderr with one ``error: ...`` line naming the file or field (and the fix), with
no traceback; afterwards no temporary file is left, no checkpoint was written or
changed, and the files that were there are untouched. Shared across cases: one synthetic
bottle clip, one checkpoint trained on it (one iteration), one synthetic MP-100 set.
"""
import importlib.util
import json
import os
import os.path as osp
import shutil
import sys
from contextlib import contextmanager
from itertools import count

import numpy as np
import pytest
import torch
from mmengine.logging import MMLogger

from keypose_ext.utils.cli import run_main

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
BOTTLE = osp.join(ROOT, 'configs', 'bottle',
                  'td-depthreg_res18_1xb16-40e_bottle-synthetic-96x96.py')
CAPE = osp.join(ROOT, 'configs', 'cape', 'capeseq_res18_1xb8-20e_synthetic-mp100-128x128.py')
_unique = count()


def _tool(name):
    """tools/<name>.py as a module (its ``main`` takes argv)."""
    path = osp.join(ROOT, 'tools', f'{name}.py')
    spec = importlib.util.spec_from_file_location(f'_tool_{name.replace("/", "_")}', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_TOOLS = {}


def run_tool(capsys, name, *argv):
    """(exit status, stderr) of ``python tools/<name>.py argv...``, in this process."""
    if name not in _TOOLS:
        _TOOLS[name] = _tool(name)
    argv = [str(a) for a in argv]
    if name in ('train', 'test') and '--cfg-options' in argv:
        # one logger/visualizer per run: mmengine keeps them per process by name
        n = next(_unique)
        at = argv.index('--cfg-options') + 1
        argv[at:at] = [f'experiment_name=bad{n}', f'visualizer.name=bad{n}']
    capsys.readouterr()
    # mmengine's print_log(logger='current') writes through the latest MMLogger; one made
    # now holds this test's (captured) stdout rather than an earlier test's closed one
    MMLogger.get_instance(f'bad_inputs_call{next(_unique)}', log_level='WARNING')
    with pytest.raises(SystemExit) as exc:
        run_main(lambda: _TOOLS[name].main(argv))
    return exc.value.code, capsys.readouterr().err


def _state(root):
    """{path: (size, mtime)} of the files under root."""
    out = {}
    for folder, _, files in os.walk(root):
        for f in files:
            p = osp.join(folder, f)
            st = os.stat(p)
            out[p] = (st.st_size, st.st_mtime_ns)
    return out


def assert_clean_failure(code, err, before, root, *needles, status=2):
    """Exit status, one last ``error:`` line holding the needles, nothing half-written."""
    assert code in (status if isinstance(status, tuple) else (status, )), err[-3000:]
    assert 'Traceback' not in err, err[-3000:]
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines and lines[-1].startswith('error: '), err[-3000:]
    for needle in needles:
        assert str(needle) in lines[-1], (needle, lines[-1])
    after = _state(root)
    for path, stat in before.items():
        assert after.get(path) == stat, f'{path} changed or vanished'
    new = set(after) - set(before)
    leftovers = [p for p in new if '.tmp' in osp.basename(p)]
    assert not leftovers, f'temporary files left: {leftovers}'
    written = [p for p in new if p.endswith('.pth')]
    assert not written, f'checkpoints written by a failed run: {written}'


@contextmanager
def read_only(monkeypatch, folder):
    """``folder`` refuses writes: chmod 0555, or (as root, who ignores modes) the write
    calls raise EACCES for paths in it."""
    folder = osp.realpath(str(folder))
    if os.geteuid() != 0:
        os.chmod(folder, 0o555)
        try:
            yield
        finally:
            os.chmod(folder, 0o755)
        return

    def inside(path):
        return osp.realpath(str(path)).startswith(folder + os.sep) or \
            osp.realpath(str(path)) == folder

    def deny(path):
        raise PermissionError(13, 'Permission denied', str(path))

    real_open, real_os_open = open, os.open
    real_makedirs, real_mkdir = os.makedirs, os.mkdir

    def guarded_open(file, mode='r', *a, **k):
        if isinstance(file, (str, os.PathLike)) and any(c in mode for c in 'wax+') \
                and inside(file):
            deny(file)
        return real_open(file, mode, *a, **k)

    def guarded_os_open(path, flags, *a, **k):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) and inside(path):
            deny(path)
        return real_os_open(path, flags, *a, **k)

    def guarded_makedirs(path, *a, **k):
        if inside(path) and not osp.isdir(path):
            deny(path)
        return real_makedirs(path, *a, **k)

    def guarded_mkdir(path, *a, **k):
        if inside(path):
            deny(path)
        return real_mkdir(path, *a, **k)

    import builtins
    monkeypatch.setattr(builtins, 'open', guarded_open)
    monkeypatch.setattr(os, 'open', guarded_os_open)
    monkeypatch.setattr(os, 'makedirs', guarded_makedirs)
    monkeypatch.setattr(os, 'mkdir', guarded_mkdir)
    try:
        yield
    finally:
        monkeypatch.undo()


# --------------------------------------------------------------------------- data
@pytest.fixture(scope='module')
def env(tmp_path_factory):
    from keypose_ext.testing.synthetic_bottle import make_bottle_dataset
    from keypose_ext.testing.synthetic_mp100 import make_synthetic_mp100
    root = tmp_path_factory.mktemp('bad_inputs')
    data = root / 'bottle'
    make_bottle_dataset(str(data), num_frames=16, size=(96, 72), seed=3)
    mp100 = root / 'mp100'
    make_synthetic_mp100(str(mp100), keypoint_counts=(3, 5, 8, 4), images_per_category=4, seed=0)
    work = root / 'trained'
    train = _tool('train')
    with pytest.raises(SystemExit) as exc:
        run_main(lambda: train.main([
            BOTTLE, '--work-dir',
            str(work
                ), '--no-validate', '--cfg-options', f'train_dataloader.dataset.data_root={data}',
            'train_cfg.max_epochs=1', 'train_dataloader.batch_size=16',
            'experiment_name=bad_inputs_trained', 'visualizer.name=bad_inputs_trained'
        ]))
    assert exc.value.code == 0
    ckpt = work / 'epoch_1.pth'
    files = _bad_checkpoints(root / 'ckpts', ckpt)
    return dict(root=root, data=data, mp100=mp100, ckpt=ckpt, work=work, **files)


def _bad_checkpoints(folder, good):
    folder.mkdir()
    blob = good.read_bytes()
    out = dict(
        empty=folder / 'empty.pth',
        truncated=folder / 'truncated.pth',
        random=folder / 'random.pth',
        refused=folder / 'refused.pth',
        weights=folder / 'weights_only.pth',
        other=folder / 'other_model.pth')
    out['empty'].write_bytes(b'')
    out['truncated'].write_bytes(blob[:len(blob) // 3])
    out['random'].write_bytes(np.random.default_rng(0).bytes(1 << 16))

    class Evil:

        def __reduce__(self):
            return os.system, ('echo pwned', )

    torch.save({'state_dict': {}, 'meta': {}, 'x': Evil()}, out['refused'])
    state = torch.load(good, map_location='cpu', weights_only=False)
    torch.save({'state_dict': state['state_dict']}, out['weights'])
    state['state_dict'] = {
        ('backbone.extra.' + k if 'layer4' in k else k): v
        for k, v in state['state_dict'].items()
    }
    torch.save(state, out['other'])
    return {f'{k}_ckpt': v for k, v in out.items()}


def _bottle_args(env, work, data=None, *extra_cfg):
    data = data or env['data']
    return [
        BOTTLE, '--work-dir', work, '--no-validate', '--cfg-options',
        f'train_dataloader.dataset.data_root={data}', f'val_dataloader.dataset.data_root={data}',
        f'test_dataloader.dataset.data_root={data}', 'train_cfg.max_epochs=1',
        'train_dataloader.batch_size=16', *extra_cfg
    ]


def _copy_data(env, tmp_path):
    dst = tmp_path / 'bottle_copy'
    shutil.copytree(env['data'], dst, ignore=shutil.ignore_patterns('.cache'))
    return dst


def _write_config(tmp_path, text, name='bad_config.py'):
    path = tmp_path / name
    path.write_text(text)
    return path


# ------------------------------------------------------------ tools/train.py cases
def test_train_config_missing(env, tmp_path, capsys):
    before = _state(tmp_path)
    code, err = run_tool(capsys, 'train', tmp_path / 'nope.py')
    assert_clean_failure(code, err, before, tmp_path, 'nope.py', 'not found')


def test_train_config_syntax_error(env, tmp_path, capsys):
    cfg = _write_config(tmp_path, "_base_ = ['x.py']\nmodel = dict(type='A'\nx = 1\n")
    before = _state(tmp_path)
    code, err = run_tool(capsys, 'train', cfg)
    assert_clean_failure(code, err, before, tmp_path, str(cfg), 'line 2', 'syntax')


def test_train_config_name_error(env, tmp_path, capsys):
    cfg = _write_config(tmp_path, f"_base_ = [{BOTTLE!r}]\nlr = undefined_name * 2\n")
    before = _state(tmp_path)
    code, err = run_tool(capsys, 'train', cfg)
    assert_clean_failure(code, err, before, tmp_path, str(cfg), 'line 2', 'undefined_name')


def test_train_config_missing_base(env, tmp_path, capsys):
    cfg = _write_config(tmp_path, "_base_ = ['./no_such_base.py']\n")
    before = _state(tmp_path)
    code, err = run_tool(capsys, 'train', cfg)
    assert_clean_failure(code, err, before, tmp_path, 'no_such_base.py')


def test_train_cfg_options_bad_index(env, tmp_path, capsys):
    before = _state(tmp_path)
    code, err = run_tool(
        capsys, 'train',
        *_bottle_args(env, tmp_path / 'w', None, 'train_dataloader.dataset.pipeline.99.type=X'))
    assert_clean_failure(code, err, before, tmp_path, '--cfg-options')


def test_train_work_dir_is_a_file(env, tmp_path, capsys):
    (tmp_path / 'w').write_text('not a folder')
    before = _state(tmp_path)
    code, err = run_tool(capsys, 'train', *_bottle_args(env, tmp_path / 'w'))
    assert_clean_failure(code, err, before, tmp_path, str(tmp_path / 'w'), 'is a file')


def test_train_work_dir_read_only(env, tmp_path, capsys, monkeypatch):
    (tmp_path / 'ro').mkdir()
    before = _state(tmp_path)
    with read_only(monkeypatch, tmp_path / 'ro'):
        code, err = run_tool(capsys, 'train', *_bottle_args(env, tmp_path / 'ro' / 'w'))
    assert_clean_failure(code, err, before, tmp_path, str(tmp_path / 'ro'))


def test_train_resume_with_nothing_to_resume(env, tmp_path, capsys):
    before = _state(tmp_path)
    code, err = run_tool(capsys, 'train', *_bottle_args(env, tmp_path / 'w'), '--resume')
    assert_clean_failure(code, err, before, tmp_path, 'nothing to resume', str(tmp_path / 'w'))


def test_train_resume_missing_file(env, tmp_path, capsys):
    before = _state(tmp_path)
    code, err = run_tool(capsys, 'train', *_bottle_args(env, tmp_path / 'w'), '--resume',
                         tmp_path / 'gone.pth')
    assert_clean_failure(code, err, before, tmp_path, 'gone.pth', 'not found')


@pytest.mark.parametrize('kind,needle', [
    ('empty', 'is empty (0 bytes)'),
    ('truncated', 'truncated, corrupt or not a PyTorch checkpoint'),
    ('random', 'truncated, corrupt or not a PyTorch checkpoint'),
    ('refused', 'refused to load: it asks to unpickle posix.system'),
    ('weights', 'not a training checkpoint'),
    ('other', 'does not fit the model'),
])
def test_train_resume_bad_checkpoint(env, tmp_path, capsys, kind, needle):
    before = _state(tmp_path)
    before_ckpts = _state(env['root'] / 'ckpts')
    code, err = run_tool(capsys, 'train', *_bottle_args(env, tmp_path / 'w'), '--resume',
                         env[f'{kind}_ckpt'])
    assert_clean_failure(code, err, before, tmp_path, env[f'{kind}_ckpt'], needle)
    assert _state(env['root'] / 'ckpts') == before_ckpts


def test_train_resume_truncated_latest(env, tmp_path, capsys):
    work = tmp_path / 'w'
    work.mkdir()
    shutil.copy(env['truncated_ckpt'], work / 'epoch_1.pth')
    (work / 'last_checkpoint').write_text(str(work / 'epoch_1.pth'))
    before = _state(tmp_path)
    code, err = run_tool(capsys, 'train', *_bottle_args(env, work), '--resume')
    assert_clean_failure(code, err, before, tmp_path, work / 'epoch_1.pth', 'truncated')


def test_train_resume_dangling_last_checkpoint(env, tmp_path, capsys):
    work = tmp_path / 'w'
    work.mkdir()
    (work / 'last_checkpoint').write_text(str(tmp_path / 'elsewhere' / 'epoch_9.pth'))
    before = _state(tmp_path)
    code, err = run_tool(capsys, 'train', *_bottle_args(env, work), '--resume')
    assert_clean_failure(code, err, before, tmp_path, 'epoch_9.pth', 'does not exist')


def test_train_load_from_truncated(env, tmp_path, capsys):
    before = _state(tmp_path)
    code, err = run_tool(
        capsys, 'train',
        *_bottle_args(env, tmp_path / 'w', None, f'load_from={env["truncated_ckpt"]}'))
    assert_clean_failure(code, err, before, tmp_path, env['truncated_ckpt'], 'truncated')


def test_train_amp_with_another_optim_wrapper(env, tmp_path, capsys):
    before = _state(tmp_path)
    code, err = run_tool(
        capsys, 'train',
        *_bottle_args(env, tmp_path / 'w', None, 'optim_wrapper.type=ApexOptimWrapper'), '--amp')
    assert_clean_failure(code, err, before, tmp_path, '--amp', 'ApexOptimWrapper')


@pytest.mark.skipif(torch.cuda.is_available(), reason='checks the machine without CUDA')
def test_train_fsdp_config_without_a_gpu(tmp_path, capsys):
    config = osp.join(ROOT, 'configs', 'sapiens',
                      'td-hm_sapiens-1b-fsdp-offload_1xb2-100e_coco-384x288.py')
    before = _state(tmp_path)
    code, err = run_tool(capsys, 'train', config, '--work-dir', tmp_path / 'w')
    assert_clean_failure(code, err, before, tmp_path, config, 'FSDPStrategy', 'CUDA GPU',
                         'stage1_gtx1650.py')
    assert not osp.exists(tmp_path / 'w')


def test_train_auto_scale_lr_without_base(env, tmp_path, capsys):
    before = _state(tmp_path)
    code, err = run_tool(
        capsys, 'train', *_bottle_args(env, tmp_path / 'w', None,
                                       'auto_scale_lr.base_batch_size=0'), '--auto-scale-lr')
    assert_clean_failure(code, err, before, tmp_path, 'base_batch_size')


HOLD_LOCK = """
import fcntl, os, sys, time
fd = os.open(os.path.join(sys.argv[1], '.keypose_run.lock'), os.O_RDWR | os.O_CREAT, 0o644)
fcntl.lockf(fd, fcntl.LOCK_EX)
os.write(fd, b'4242 on otherhost\\n')
print('locked', flush=True)
time.sleep(120)
"""


def test_train_work_dir_in_use(env, tmp_path, capsys):
    """A running training holds the work dir's lock (a plain process stands in)."""
    import subprocess
    work = tmp_path / 'w'
    work.mkdir()
    holder = subprocess.Popen([sys.executable, '-c', HOLD_LOCK,
                               str(work)],
                              stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == 'locked'
        before = _state(tmp_path)
        code, err = run_tool(capsys, 'train', *_bottle_args(env, work))
        assert_clean_failure(code, err, before, tmp_path, str(work),
                             'in use by another training run (process 4242 on otherhost)')
    finally:
        holder.kill()
        holder.wait()


def test_train_data_root_missing(env, tmp_path, capsys):
    before = _state(tmp_path)
    code, err = run_tool(capsys, 'train', *_bottle_args(env, tmp_path / 'w', tmp_path / 'no_data'))
    assert_clean_failure(code, err, before, tmp_path, 'no_data')


def test_train_annotations_malformed_json(env, tmp_path, capsys):
    data = _copy_data(env, tmp_path)
    (data / 'annotations.json').write_text('{"images": [')
    before = _state(tmp_path)
    code, err = run_tool(capsys, 'train', *_bottle_args(env, tmp_path / 'w', data))
    assert_clean_failure(code, err, before, tmp_path, 'annotations.json', 'line 1')


def test_train_annotations_wrong_keypoint_count(env, tmp_path, capsys):
    data = _copy_data(env, tmp_path)
    ann = json.loads((data / 'annotations.json').read_text())
    ann['annotations'][2]['keypoints'] = ann['annotations'][2]['keypoints'][:-3]
    (data / 'annotations.json').write_text(json.dumps(ann))
    before = _state(tmp_path)
    code, err = run_tool(capsys, 'train', *_bottle_args(env, tmp_path / 'w', data))
    assert_clean_failure(code, err, before, tmp_path, 'annotations.json', 'keypoints')


def test_train_negative_depth(env, tmp_path, capsys):
    data = _copy_data(env, tmp_path)
    ann = json.loads((data / 'annotations.json').read_text())
    ann['annotations'][1]['keypoints_depth'][0] = -1.5
    (data / 'annotations.json').write_text(json.dumps(ann))
    before = _state(tmp_path)
    code, err = run_tool(capsys, 'train', *_bottle_args(env, tmp_path / 'w', data))
    assert_clean_failure(code, err, before, tmp_path, 'annotations.json', 'keypoints_depth')


@pytest.mark.parametrize('content', [b'', b'\x89PNG random bytes' * 10], ids=['empty', 'random'])
def test_train_bad_frame_image(env, tmp_path, capsys, content):
    data = _copy_data(env, tmp_path)
    frame = sorted((data / 'images').iterdir())[3]
    frame.write_bytes(content)
    before = _state(tmp_path)
    code, err = run_tool(capsys, 'train', *_bottle_args(env, tmp_path / 'w', data))
    assert_clean_failure(code, err, before, tmp_path, frame.name)


def test_train_read_only_data_root_and_cache_dir(env, tmp_path, capsys, monkeypatch):
    data = _copy_data(env, tmp_path)
    (tmp_path / 'ro_cache').mkdir()
    before = _state(tmp_path)
    with read_only(monkeypatch, data), read_only(monkeypatch, tmp_path / 'ro_cache'):
        code, err = run_tool(
            capsys, 'train',
            *_bottle_args(env, tmp_path / 'w', data,
                          f'train_dataloader.dataset.cache_dir={tmp_path}/ro_cache'))
    assert_clean_failure(code, err, before, tmp_path, 'ro_cache', 'cache_dir')


def test_train_read_only_data_root_falls_back_to_the_user_cache(env, tmp_path, capsys, monkeypatch):
    # not an error: the frame cache goes to $XDG_CACHE_HOME, with a warning
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'xdg'))
    data = _copy_data(env, tmp_path)
    before = _state(data)
    with read_only(monkeypatch, data):
        code, err = run_tool(capsys, 'train', *_bottle_args(env, tmp_path / 'w', data))
    assert code == 0, err[-3000:]
    assert _state(data) == before
    assert list((tmp_path / 'xdg').rglob('*.npy'))


def test_train_non_finite_loss_stops_with_one_line(env, tmp_path, capsys):
    work = tmp_path / 'w'
    before = _state(tmp_path)
    code, err = run_tool(
        capsys, 'train',
        *_bottle_args(env, work, None, 'optim_wrapper.optimizer.lr=1e30', 'train_cfg.max_epochs=4',
                      'train_dataloader.batch_size=8'))
    assert_clean_failure(code, err, before, tmp_path, 'non-finite loss (loss=',
                         'training stopped before the optimizer step')
    assert 'iteration ' in err.splitlines()[-1]


# ------------------------------------------------------------- tools/test.py cases
def _test_args(env, work, ckpt, *extra):
    return [
        BOTTLE, ckpt, '--work-dir', work, '--cfg-options',
        f'test_dataloader.dataset.data_root={env["data"]}', *extra
    ]


def test_test_checkpoint_missing(env, tmp_path, capsys):
    before = _state(tmp_path)
    code, err = run_tool(capsys, 'test', *_test_args(env, tmp_path / 'w', tmp_path / 'x.pth'))
    assert_clean_failure(code, err, before, tmp_path, 'x.pth', 'not found')


def test_test_checkpoint_is_a_folder(env, tmp_path, capsys):
    (tmp_path / 'd.pth').mkdir()
    before = _state(tmp_path)
    code, err = run_tool(capsys, 'test', *_test_args(env, tmp_path / 'w', tmp_path / 'd.pth'))
    assert_clean_failure(code, err, before, tmp_path, 'd.pth', 'is a folder')


@pytest.mark.parametrize('kind,needle', [
    ('empty', 'is empty (0 bytes)'),
    ('truncated', 'truncated, corrupt or not a PyTorch checkpoint'),
    ('random', 'truncated, corrupt or not a PyTorch checkpoint'),
    ('refused', 'refused to load: it asks to unpickle posix.system'),
])
def test_test_bad_checkpoint(env, tmp_path, capsys, kind, needle):
    before = _state(tmp_path)
    code, err = run_tool(capsys, 'test', *_test_args(env, tmp_path / 'w', env[f'{kind}_ckpt']))
    assert_clean_failure(code, err, before, tmp_path, env[f'{kind}_ckpt'], needle)


def test_test_checkpoint_of_another_model_needs_load_partial(env, tmp_path, capsys):
    before = _state(tmp_path)
    code, err = run_tool(capsys, 'test', *_test_args(env, tmp_path / 'w', env['other_ckpt']))
    assert_clean_failure(code, err, before, tmp_path, env['other_ckpt'], 'does not fit the model',
                         '--load-partial')
    # the flag lets it through (the control)
    code, err = run_tool(capsys, 'test', *_test_args(env, tmp_path / 'w2', env['other_ckpt']),
                         '--load-partial')
    assert code == 0, err[-3000:]


def test_test_out_not_a_pickle(env, tmp_path, capsys):
    before = _state(tmp_path)
    code, err = run_tool(capsys, 'test', *_test_args(env, tmp_path / 'w', env['ckpt']), '--out',
                         tmp_path / 'res.json')
    assert_clean_failure(code, err, before, tmp_path, '--out', '.pkl')


def test_test_config_syntax_error(env, tmp_path, capsys):
    cfg = _write_config(tmp_path, 'model = dict(\n')
    before = _state(tmp_path)
    code, err = run_tool(capsys, 'test', cfg, env['ckpt'])
    assert_clean_failure(code, err, before, tmp_path, str(cfg), 'syntax')


def test_test_work_dir_is_a_file(env, tmp_path, capsys):
    (tmp_path / 'w').write_text('x')
    before = _state(tmp_path)
    code, err = run_tool(capsys, 'test', *_test_args(env, tmp_path / 'w', env['ckpt']))
    assert_clean_failure(code, err, before, tmp_path, 'is a file')


def test_test_data_root_missing(env, tmp_path, capsys):
    before = _state(tmp_path)
    code, err = run_tool(capsys, 'test', BOTTLE, env['ckpt'], '--work-dir', tmp_path / 'w',
                         '--cfg-options', f'test_dataloader.dataset.data_root={tmp_path}/nd')
    assert_clean_failure(code, err, before, tmp_path, 'nd')


# ------------------------------------------------------------------ CAPE workflow
def _cape_args(env, work, data=None, *extra):
    data = data or env['mp100']
    return [
        CAPE, '--work-dir', work, '--no-validate', '--cfg-options',
        f'train_dataloader.dataset.data_root={data}', f'val_dataloader.dataset.data_root={data}',
        f'test_dataloader.dataset.data_root={data}', 'train_cfg.max_epochs=1', *extra
    ]


def test_cape_data_root_missing(env, tmp_path, capsys):
    before = _state(tmp_path)
    code, err = run_tool(capsys, 'train', *_cape_args(env, tmp_path / 'w', tmp_path / 'no_mp100'))
    assert_clean_failure(code, err, before, tmp_path, 'no_mp100')


def test_cape_malformed_annotation(env, tmp_path, capsys):
    data = tmp_path / 'mp100'
    shutil.copytree(env['mp100'], data)
    anns = sorted((data / 'annotations').glob('*train*.json'))
    anns[0].write_text('{"images": [}')
    before = _state(tmp_path)
    code, err = run_tool(capsys, 'train', *_cape_args(env, tmp_path / 'w', data))
    assert_clean_failure(code, err, before, tmp_path, anns[0].name)


def test_cape_test_truncated_checkpoint(env, tmp_path, capsys):
    before = _state(tmp_path)
    code, err = run_tool(capsys, 'test', CAPE, env['truncated_ckpt'], '--work-dir', tmp_path / 'w',
                         '--cfg-options', f'test_dataloader.dataset.data_root={env["mp100"]}')
    assert_clean_failure(code, err, before, tmp_path, env['truncated_ckpt'], 'truncated')


def test_cape_debug_unknown_category(env, tmp_path, capsys):
    before = _state(tmp_path)
    code, err = run_tool(capsys, 'train', *_cape_args(env, tmp_path / 'w'), '--debug-single-image',
                         '987654')
    assert_clean_failure(code, err, before, tmp_path, '987654')


# --------------------------------------------------------------- Sapiens workflow
def _sapiens_config(tmp_path, checkpoint, data_root):
    from sapiens_test_utils import write_tiny_stage1_config
    return write_tiny_stage1_config(tmp_path, checkpoint, data_root)


def test_sapiens_pretrained_missing(env, tmp_path, capsys):
    from keypose_ext.testing.synthetic_coco import make_synthetic_coco
    make_synthetic_coco(str(tmp_path / 'coco'), num_images=dict(train=2, val=2))
    cfg = _sapiens_config(tmp_path, tmp_path / 'no_sapiens.pt2', tmp_path / 'coco')
    before = _state(tmp_path)
    code, err = run_tool(capsys, 'train', cfg, '--work-dir', tmp_path / 'w', '--cfg-options',
                         'train_cfg.max_epochs=1')
    assert_clean_failure(code, err, before, tmp_path, 'no_sapiens.pt2')


def test_sapiens_pretrained_corrupt(env, tmp_path, capsys):
    from keypose_ext.testing.synthetic_coco import make_synthetic_coco
    make_synthetic_coco(str(tmp_path / 'coco'), num_images=dict(train=2, val=2))
    bad = tmp_path / 'sapiens.pt2'
    bad.write_bytes(b'PK\x03\x04 not really a zip' * 50)
    cfg = _sapiens_config(tmp_path, bad, tmp_path / 'coco')
    before = _state(tmp_path)
    code, err = run_tool(capsys, 'train', cfg, '--work-dir', tmp_path / 'w', '--cfg-options',
                         'train_cfg.max_epochs=1')
    assert_clean_failure(code, err, before, tmp_path, 'sapiens.pt2')


def test_sapiens_coco_annotations_missing(env, tmp_path, capsys):
    from sapiens_test_utils import make_tiny_trace
    trace, _ = make_tiny_trace(tmp_path / 'tiny.pt2')
    cfg = _sapiens_config(tmp_path, trace, tmp_path / 'no_coco')
    before = _state(tmp_path)
    code, err = run_tool(capsys, 'train', cfg, '--work-dir', tmp_path / 'w', '--cfg-options',
                         'train_cfg.max_epochs=1')
    assert_clean_failure(code, err, before, tmp_path, 'no_coco')


# ------------------------------------------------------------- the other tools
def test_check_env_config_syntax_error(env, tmp_path, capsys):
    cfg = _write_config(tmp_path, 'model = dict(\n')
    before = _state(tmp_path)
    code, err = run_tool(capsys, 'check_env', '--config', cfg)
    assert_clean_failure(code, err, before, tmp_path, str(cfg))


def test_check_env_config_missing(env, tmp_path, capsys):
    before = _state(tmp_path)
    code, err = run_tool(capsys, 'check_env', '--config', tmp_path / 'none.py')
    assert_clean_failure(code, err, before, tmp_path, 'none.py')


def _converter(capsys, *argv):
    return run_tool(capsys, 'dataset_converters/video_to_bottle_data', *argv)


@pytest.fixture(scope='module')
def video(tmp_path_factory):
    from keypose_ext.testing.synthetic_bottle import (render_synthetic_bottle_video,
                                                      write_json_annotations)
    tmp = tmp_path_factory.mktemp('video')
    gt = render_synthetic_bottle_video(str(tmp / 'clip.mp4'), 6, (64, 48), seed=1)
    write_json_annotations(str(tmp / 'clip.json'), gt)
    return tmp


def test_converter_video_missing(video, tmp_path, capsys):
    before = _state(tmp_path)
    code, err = _converter(capsys, tmp_path / 'none.mp4', '--annotations', video / 'clip.json',
                           '--out-dir', tmp_path / 'out')
    assert_clean_failure(code, err, before, tmp_path, 'none.mp4')


def test_converter_out_dir_is_a_file(video, tmp_path, capsys):
    (tmp_path / 'out').write_text('a regular file')
    before = _state(tmp_path)
    code, err = _converter(capsys, video / 'clip.mp4', '--annotations', video / 'clip.json',
                           '--out-dir', tmp_path / 'out')
    assert_clean_failure(code, err, before, tmp_path, str(tmp_path / 'out'))


def test_converter_malformed_annotations(video, tmp_path, capsys):
    (tmp_path / 'bad.json').write_text('[{"frame": ')
    before = _state(tmp_path)
    code, err = _converter(capsys, video / 'clip.mp4', '--annotations', tmp_path / 'bad.json',
                           '--out-dir', tmp_path / 'out')
    assert_clean_failure(code, err, before, tmp_path, 'bad.json')
    assert not (tmp_path / 'out' / 'annotations.json').exists()


def test_converter_video_random_bytes(video, tmp_path, capsys):
    (tmp_path / 'noise.mp4').write_bytes(np.random.default_rng(1).bytes(4096))
    before = _state(tmp_path)
    code, err = _converter(capsys, tmp_path / 'noise.mp4', '--annotations', video / 'clip.json',
                           '--out-dir', tmp_path / 'out')
    assert_clean_failure(code, err, before, tmp_path, 'noise.mp4')
    assert not (tmp_path / 'out' / 'annotations.json').exists()


def test_download_coco_malformed_manifest(tmp_path, capsys):
    (tmp_path / 'manifest.json').write_text('{"val": {"size": ')
    before = _state(tmp_path)
    code, err = run_tool(capsys, 'download_coco', '--data-root', tmp_path / 'coco', '--manifest',
                         tmp_path / 'manifest.json', '--parts', 'val')
    assert_clean_failure(code, err, before, tmp_path, 'manifest.json', status=(1, 2))


def test_download_coco_corrupt_zip_without_checksum(tmp_path, capsys):
    mirror = tmp_path / 'mirror' / 'zips'
    mirror.mkdir(parents=True)
    (mirror / 'val2017.zip').write_bytes(b'PK\x03\x04' + b'\0' * 500)
    manifest = tmp_path / 'manifest.json'
    manifest.write_text(json.dumps({'val': dict(size=504, md5=None, count=1)}))
    before = _state(tmp_path)
    code, err = run_tool(capsys, 'download_coco', '--data-root', tmp_path / 'coco', '--manifest',
                         manifest, '--parts', 'val', '--no-checksum', '--base-url',
                         (tmp_path / 'mirror').as_uri())
    assert_clean_failure(code, err, before, tmp_path, 'val2017.zip', status=(1, 2))


def test_download_coco_read_only_folder(tmp_path, capsys, monkeypatch):
    (tmp_path / 'ro').mkdir()
    before = _state(tmp_path)
    with read_only(monkeypatch, tmp_path / 'ro'):
        code, err = run_tool(capsys, 'download_coco', '--data-root', tmp_path / 'ro' / 'coco',
                             '--parts', 'val', '--base-url', (tmp_path / 'nowhere').as_uri())
    # the tool's own errors exit with 1; run_main's one line for an OS error with 2
    assert_clean_failure(code, err, before, tmp_path, str(tmp_path / 'ro'), status=(1, 2))


def test_download_pretrained_read_only_folder(tmp_path, capsys, monkeypatch):
    (tmp_path / 'ro').mkdir()
    before = _state(tmp_path)
    with read_only(monkeypatch, tmp_path / 'ro'):
        code, err = run_tool(capsys, 'download_pretrained', '--out-dir', tmp_path / 'ro',
                             '--endpoint', (tmp_path / 'nowhere').as_uri())
    assert_clean_failure(code, err, before, tmp_path, str(tmp_path / 'ro'), status=(1, 2))

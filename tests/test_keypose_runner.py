"""KeyposeRunner: checkpoint loading errors, strictness, resume lookup, lr scaling with
accumulation, the work-dir lock and DDP on CPUs."""
import os
import subprocess
import sys

import pytest
import torch
from mmengine.runner import Runner
from runtime_toys import toy_runner

from keypose_ext.utils.errors import (KeyposeUserError, UserFileNotFoundError, UserRuntimeError,
                                      UserValueError)


@pytest.fixture(scope='module')
def ckpt(tmp_path_factory):
    work = tmp_path_factory.mktemp('trained')
    toy_runner(work, max_epochs=1).train()
    return work / 'epoch_1.pth'


def _bad_files(tmp_path, good):
    data = good.read_bytes()
    files = {'empty': b'', 'truncated': data[:len(data) // 2], 'random': os.urandom(4096)}
    out = {}
    for name, content in files.items():
        out[name] = tmp_path / f'{name}.pth'
        out[name].write_bytes(content)

    class Evil:

        def __reduce__(self):
            return os.system, ('echo pwned', )

    out['refused'] = tmp_path / 'refused.pth'
    torch.save({'state_dict': {}, 'x': Evil()}, out['refused'])
    return out


@pytest.mark.parametrize('kind,message', [
    ('empty', 'is empty (0 bytes)'),
    ('truncated', 'truncated, corrupt or not a PyTorch checkpoint'),
    ('random', 'truncated, corrupt or not a PyTorch checkpoint'),
    ('refused', 'refused to load: it asks to unpickle posix.system'),
    ('missing', 'not found'),
])
@pytest.mark.parametrize('how', ['load_from', 'resume'])
def test_bad_checkpoints_end_in_one_line(tmp_path, ckpt, kind, message, how):
    files = _bad_files(tmp_path, ckpt)
    path = str(files.get(kind, tmp_path / 'missing.pth'))
    runner = toy_runner(tmp_path / 'work', max_epochs=2, load_from=path, resume=how == 'resume')
    with pytest.raises(KeyposeUserError) as err:
        runner.train()
    assert message in str(err.value) and path in str(err.value)
    assert '\n' not in str(err.value)


def test_checkpoint_that_does_not_fit_needs_load_partial(tmp_path, ckpt):
    state = torch.load(ckpt, weights_only=False)
    state['state_dict'] = {'fc.weight': torch.zeros(1, 2), 'other.bias': torch.zeros(3)}
    torch.save(state, tmp_path / 'other.pth')
    runner = toy_runner(tmp_path / 'a', max_epochs=1, load_from=str(tmp_path / 'other.pth'))
    with pytest.raises(
            UserValueError,
            match=r'does not fit the model: 1 missing \(e\.g\. '
            r'fc\.bias\), 1 unexpected \(e\.g\. other\.bias\); pass --load-partial'):
        runner.train()
    runner = toy_runner(
        tmp_path / 'b',
        max_epochs=1,
        load_from=str(tmp_path / 'other.pth'),
        cfg=dict(load_partial=True))
    runner.train()  # loads fc.weight, keeps fc.bias
    with pytest.raises(UserValueError, match='resume needs the same model'):
        toy_runner(
            tmp_path / 'c',
            max_epochs=2,
            load_from=str(tmp_path / 'other.pth'),
            resume=True,
            cfg=dict(load_partial=True)).train()


def test_resume_of_a_weights_only_file_says_so(tmp_path):
    torch.save({'state_dict': toy_runner(tmp_path / 'w').model.state_dict()},
               tmp_path / 'weights.pth')
    with pytest.raises(UserValueError, match="not a training checkpoint \\(no 'meta'\\)"):
        toy_runner(tmp_path / 'r', load_from=str(tmp_path / 'weights.pth'), resume=True).train()


def test_resume_finds_a_moved_work_dir_and_refuses_a_dangling_pointer(tmp_path):
    toy_runner(tmp_path / 'old', max_epochs=1).train()
    os.rename(tmp_path / 'old', tmp_path / 'new')  # last_checkpoint still names old/
    runner = toy_runner(tmp_path / 'new', max_epochs=2, resume=True)
    runner.train()
    assert runner.epoch == 2
    (tmp_path / 'new' / 'last_checkpoint').write_text(str(tmp_path / 'gone' / 'x.pth'))
    with pytest.raises(UserFileNotFoundError, match='which does not exist'):
        toy_runner(tmp_path / 'new', max_epochs=3, resume=True).train()


def test_stock_runner_fails_to_resume_on_torch_2_6_and_ours_does(tmp_path):
    toy_runner(tmp_path, max_epochs=1).train()
    with pytest.raises(Exception, match='Weights only load failed'):  # upstream as is
        toy_runner(tmp_path, runner_cls=Runner, max_epochs=2, resume=True).train()
    runner = toy_runner(tmp_path, max_epochs=2, resume=True)
    runner.train()
    assert (runner.epoch, runner.iter) == (2, 8)


@pytest.mark.parametrize('runner_cls,ratio', [(Runner, 2 / 16), ('keypose', 2 * 4 / 16)])
def test_auto_scale_lr_counts_accumulated_batches(tmp_path, runner_cls, ratio):
    kwargs = dict(
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1), accumulative_counts=4),
        auto_scale_lr=dict(enable=True, base_batch_size=16),
        max_epochs=1)
    runner = (
        toy_runner(tmp_path, runner_cls=runner_cls, **kwargs)
        if runner_cls is Runner else toy_runner(tmp_path, **kwargs))
    runner.optim_wrapper = runner.build_optim_wrapper(runner.optim_wrapper)
    runner.scale_lr(runner.optim_wrapper, runner.auto_scale_lr)
    assert runner.optim_wrapper.param_groups[0]['lr'] == pytest.approx(0.1 * ratio)


# what acquire_work_dir_lock does, without importing keypose_ext (~8 s in a new interpreter)
HOLD = '''
import fcntl, os, sys, time
fd = os.open(os.path.join(sys.argv[1], '.keypose_run.lock'), os.O_RDWR | os.O_CREAT, 0o644)
fcntl.lockf(fd, fcntl.LOCK_EX)
os.write(fd, f'{os.getpid()} on {os.uname().nodename}'.encode())
print('locked', flush=True)
time.sleep(120)
'''


def test_second_run_in_a_work_dir_names_the_holder(tmp_path):
    holder = subprocess.Popen([sys.executable, '-c', HOLD,
                               str(tmp_path)],
                              stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == 'locked'
        with pytest.raises(
                UserRuntimeError,
                match=f'in use by another training run '
                f'\\(process {holder.pid} on '):
            toy_runner(tmp_path, max_epochs=1).train()
    finally:
        holder.kill()  # a killed holder's lock goes with it
        holder.wait()
    toy_runner(tmp_path, max_epochs=1).train()


def test_ddp_on_cpu_uses_gloo_and_a_cpu_wrapper(tmp_path, monkeypatch):
    if torch.cuda.is_available():
        pytest.skip('checks the CPU fallback')
    from mmengine.model import MMDistributedDataParallel
    for key, value in dict(
            RANK='0',
            LOCAL_RANK='0',
            WORLD_SIZE='1',
            MASTER_ADDR='127.0.0.1',
            MASTER_PORT=str(29600 + os.getpid() % 1000)).items():
        monkeypatch.setenv(key, value)
    try:
        runner = toy_runner(
            tmp_path, max_epochs=1, launcher='pytorch', env_cfg=dict(dist_cfg=dict(backend='nccl')))
        assert torch.distributed.get_backend() == 'gloo'
        assert isinstance(runner.model, MMDistributedDataParallel)
        assert runner.model.device_ids is None
        runner.train()
        assert (tmp_path / 'epoch_1.pth').exists()
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()

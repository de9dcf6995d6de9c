"""KeyposeCheckpointHook: complete files in the right order, never a NaN best."""
import os
import stat

import pytest
import torch
from mmengine.runner import Runner
from runtime_toys import toy_runner

from keypose_ext.utils.atomic_local_backend import AtomicLocalBackend
from keypose_ext.utils.errors import UserRuntimeError
from keypose_ext.utils.safe_checkpoint_globals import mmengine_checkpoint_globals


def _load(path):
    with mmengine_checkpoint_globals():
        return torch.load(path, map_location='cpu', weights_only=True)


def _pointer(work):
    return (work / 'last_checkpoint').read_text()


class _Killed(BaseException):
    """Stands in for SIGKILL: nothing after it runs (the real kill: test_train_tool)."""


def test_new_checkpoint_is_complete_before_the_old_one_is_deleted(tmp_path, monkeypatch):
    events = []
    real_put, real_remove = AtomicLocalBackend.put, AtomicLocalBackend.remove

    def put(self, obj, filepath):
        real_put(self, obj, filepath)
        events.append(('put', os.path.basename(filepath)))

    def remove(self, filepath):
        events.append(('remove', os.path.basename(filepath),
                       _pointer(tmp_path)))  # what last_checkpoint named at that moment
        real_remove(self, filepath)

    monkeypatch.setattr(AtomicLocalBackend, 'put', put)
    monkeypatch.setattr(AtomicLocalBackend, 'remove', remove)
    toy_runner(
        tmp_path,
        max_epochs=3,
        checkpoint=dict(type='KeyposeCheckpointHook', interval=1, max_keep_ckpts=1)).train()
    assert events == [('put', 'epoch_1.pth'), ('put', 'epoch_2.pth'),
                      ('remove', 'epoch_1.pth', str(tmp_path / 'epoch_2.pth')),
                      ('put', 'epoch_3.pth'),
                      ('remove', 'epoch_2.pth', str(tmp_path / 'epoch_3.pth'))]
    assert sorted(p.name for p in tmp_path.glob('*.pth')) == ['epoch_3.pth']
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((tmp_path / 'epoch_3.pth').stat().st_mode) == 0o644 & ~umask
    assert stat.S_IMODE((tmp_path / 'last_checkpoint').stat().st_mode) == 0o644 & ~umask


def test_kill_during_save_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    real_put = AtomicLocalBackend.put

    def dies_writing_epoch_2(self, obj, filepath):
        if str(filepath).endswith('epoch_2.pth'):
            (tmp_path / '.tmp_abc_epoch_2.pth').write_bytes(obj[:100])  # half written
            raise _Killed
        real_put(self, obj, filepath)

    monkeypatch.setattr(AtomicLocalBackend, 'put', dies_writing_epoch_2)
    ckpt = dict(type='KeyposeCheckpointHook', interval=1, max_keep_ckpts=1)
    with pytest.raises(_Killed):
        toy_runner(tmp_path, max_epochs=3, checkpoint=ckpt).train()
    monkeypatch.undo()
    assert _pointer(tmp_path) == str(tmp_path / 'epoch_1.pth')
    assert _load(tmp_path / 'epoch_1.pth')['meta']['epoch'] == 1
    assert not (tmp_path / 'epoch_2.pth').exists()

    resumed = toy_runner(tmp_path, max_epochs=3, checkpoint=ckpt, resume=True)
    resumed.train()
    assert resumed.epoch == 3
    assert not list(tmp_path.glob('.tmp_*')), 'stale temporary not removed at the start'
    assert sorted(p.name for p in tmp_path.glob('*.pth')) == ['epoch_3.pth']


def test_kill_between_save_and_delete_is_cleaned_at_the_next_start(tmp_path, monkeypatch):

    def dies_deleting(self, filepath):
        raise _Killed

    monkeypatch.setattr(AtomicLocalBackend, 'remove', dies_deleting)
    ckpt = dict(type='KeyposeCheckpointHook', interval=1, max_keep_ckpts=1)
    with pytest.raises(_Killed):
        toy_runner(tmp_path, max_epochs=3, checkpoint=ckpt).train()
    monkeypatch.undo()
    assert _pointer(tmp_path) == str(tmp_path / 'epoch_2.pth')
    assert (tmp_path / 'epoch_1.pth').exists()  # not yet deleted when the run died
    assert _load(tmp_path / 'epoch_2.pth')['message_hub']['runtime_info']['keep_ckpt_ids'] == [1, 2]
    toy_runner(tmp_path, max_epochs=3, checkpoint=ckpt, resume=True).train()
    assert sorted(p.name for p in tmp_path.glob('*.pth')) == ['epoch_3.pth']


@pytest.mark.parametrize('hook', ['CheckpointHook', 'KeyposeCheckpointHook'])
def test_nan_predictions_are_never_the_best(tmp_path, hook):
    ckpt = dict(type=hook, interval=1, save_best='toy/PCK', rule='greater')
    runner = toy_runner(tmp_path, max_epochs=2, checkpoint=ckpt, validate=True)
    runner.model.nan_predictions = True  # PCK 0, which beats mmengine's initial -inf
    runner.train()
    best = [p.name for p in tmp_path.glob('best_*.pth')]
    if hook == 'CheckpointHook':  # the stock hook: the control
        assert best == ['best_toy_PCK_epoch_1.pth']
    else:
        assert best == [] and runner.message_hub.get_info('best_score') is None
        runner.model.nan_predictions = False
        runner.train_loop._max_epochs = 3
        runner.train()
        assert [p.name for p in tmp_path.glob('best_*.pth')] == ['best_toy_PCK_epoch_3.pth']


@pytest.mark.parametrize('score', [float('nan'), float('inf')])
def test_non_finite_scores_are_never_the_best(tmp_path, score):
    runner = toy_runner(
        tmp_path,
        max_epochs=1,
        checkpoint=dict(
            type='KeyposeCheckpointHook', interval=1, save_best='toy/PCK', rule='greater'))
    runner.train()
    hook = [h for h in runner.hooks if type(h).__name__ == 'KeyposeCheckpointHook'][0]
    hook._save_best_checkpoint(runner, {'toy/PCK': score})
    assert not list(tmp_path.glob('best_*.pth'))
    hook._save_best_checkpoint(runner, {'toy/PCK': 0.5})
    assert [p.name for p in tmp_path.glob('best_*.pth')] == ['best_toy_PCK_epoch_1.pth']


def test_previous_best_is_deleted_after_the_new_one_is_written(tmp_path, monkeypatch):
    runner = toy_runner(
        tmp_path,
        max_epochs=1,
        checkpoint=dict(
            type='KeyposeCheckpointHook', interval=1, save_best='toy/PCK', rule='greater'))
    runner.train()
    hook = [h for h in runner.hooks if type(h).__name__ == 'KeyposeCheckpointHook'][0]
    hook._save_best_checkpoint(runner, {'toy/PCK': 0.5})
    first = tmp_path / 'best_toy_PCK_epoch_1.pth'
    assert first.exists()
    seen = []
    real_put = AtomicLocalBackend.put

    def put(self, obj, filepath):
        seen.append((os.path.basename(filepath), first.exists()))
        real_put(self, obj, filepath)

    monkeypatch.setattr(AtomicLocalBackend, 'put', put)
    runner.train_loop._epoch = 2
    hook._save_best_checkpoint(runner, {'toy/PCK': 0.9})
    assert seen[0] == ('best_toy_PCK_epoch_2.pth', True)  # old best still there
    assert not first.exists() and (tmp_path / 'best_toy_PCK_epoch_2.pth').exists()


def test_non_finite_weights_are_not_saved(tmp_path):
    runner = toy_runner(tmp_path, max_epochs=2)

    from mmengine.hooks import Hook

    class Poison(Hook):

        def after_train_epoch(self, runner):
            if runner.epoch == 1:
                with torch.no_grad():
                    runner.model.fc.weight.fill_(float('nan'))

    runner.register_hook(Poison(), priority='HIGHEST')
    with pytest.raises(UserRuntimeError, match=r'epoch 2.*non-finite weights.*epoch_1\.pth'):
        runner.train()
    assert _pointer(tmp_path) == str(tmp_path / 'epoch_1.pth')
    assert not (tmp_path / 'epoch_2.pth').exists()


def test_checkpoints_hold_random_states_and_load_weights_only(tmp_path):
    toy_runner(tmp_path, max_epochs=1).train()
    ckpt = _load(tmp_path / 'epoch_1.pth')
    assert set(ckpt['keypose_rng_state']) >= {'python', 'numpy', 'torch'}


def test_works_with_the_stock_runner(tmp_path):
    runner = toy_runner(
        tmp_path,
        runner_cls=Runner,
        max_epochs=1,
        checkpoint=dict(type='KeyposeCheckpointHook', interval=1, max_keep_ckpts=1))
    runner.train()
    assert _pointer(tmp_path) == str(tmp_path / 'epoch_1.pth')

"""KeyposeEpochBasedTrainLoop: a run resumed mid-epoch continues exactly.

12 iterations (3 epochs x 4 batches, shuffled, dropout 0.5 so the random state
matters), a checkpoint every iteration. The run dies after iteration 6 (mid epoch 2) and
is resumed; its losses from iteration 7 on must equal an uninterrupted run's, bit for bit
(CPU, one process).
"""
import pytest
import torch
from mmengine.hooks import Hook
from runtime_toys import ToyModel, toy_runner


class _Killed(BaseException):
    pass


class _Losses(Hook):
    priority = 'HIGHEST'

    def __init__(self, die_after=None):
        self.losses, self.die_after = {}, die_after

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.losses[runner.iter + 1] = (runner.epoch, batch_idx, outputs['loss'].item())


class _Die(Hook):
    priority = 'LOWEST'  # after the checkpoint of the iteration is saved

    def __init__(self, after):
        self.after = after

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.iter + 1 == self.after:
            raise _Killed


def _run(work, loop='KeyposeEpochBasedTrainLoop', resume=False, die_after=None, drop_rng=False):
    torch.manual_seed(0)  # the model is built here, before the runner seeds the run
    runner = toy_runner(
        work,
        max_epochs=3,
        shuffle=True,
        resume=resume,
        model=ToyModel(dropout=0.5),
        train_cfg=dict(type=loop, max_epochs=3),
        checkpoint=dict(type='KeyposeCheckpointHook', interval=1, by_epoch=False))
    losses = _Losses()
    runner.register_hook(losses)
    if die_after:
        runner.register_hook(_Die(die_after))
    if drop_rng:

        class Drop(Hook):

            def after_load_checkpoint(self, runner, checkpoint):
                for hook in runner.hooks:
                    if hasattr(hook, 'resumed_rng_state'):
                        hook.resumed_rng_state = None

        runner.register_hook(Drop(), priority='LOWEST')
    try:
        runner.train()
    except _Killed:
        pass
    return losses.losses


@pytest.fixture(scope='module')
def uninterrupted(tmp_path_factory):
    return _run(tmp_path_factory.mktemp('full'))


def test_resumed_mid_epoch_run_equals_the_uninterrupted_one(tmp_path, uninterrupted):
    first = _run(tmp_path, die_after=6)
    assert sorted(first) == list(range(1, 7))
    resumed = _run(tmp_path, resume=True)
    assert sorted(resumed) == list(range(7, 13))  # continues at iteration 7 ...
    assert resumed[7][:2] == (1, 2)  # ... in epoch 2, batch 3 (0-based 1, 2)
    for it in range(7, 13):
        assert resumed[it] == uninterrupted[it], it  # same epoch, batch and loss, exactly


def test_control_without_the_random_state_the_losses_differ(tmp_path, uninterrupted):
    _run(tmp_path, die_after=6)
    resumed = _run(tmp_path, resume=True, drop_rng=True)
    assert sorted(resumed) == list(range(7, 13))
    assert any(resumed[it] != uninterrupted[it] for it in range(7, 13))


def test_control_mmengines_loop_retrains_the_epoch(tmp_path):
    _run(tmp_path, loop='EpochBasedTrainLoop', die_after=6)
    resumed = _run(tmp_path, loop='EpochBasedTrainLoop', resume=True)
    # epoch 2 starts again from its first batch under later iteration numbers
    assert resumed[7][:2] == (1, 0)
    assert max(resumed) == 14


def test_fine_tuning_from_load_from_does_not_take_the_random_state(tmp_path, uninterrupted):
    _run(tmp_path / 'a', die_after=6)
    runner = toy_runner(
        tmp_path / 'b',
        max_epochs=1,
        model=ToyModel(dropout=0.5),
        load_from=str(tmp_path / 'a' / 'iter_6.pth'))
    torch.manual_seed(123)
    expected = torch.rand(1)
    torch.manual_seed(123)
    runner.train_loop._restore_rng_state()  # nothing resumed: leaves the generators alone
    assert torch.equal(torch.rand(1), expected)

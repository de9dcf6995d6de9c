"""NonFiniteLossHook: a NaN loss never reaches the weights; stop or skip-and-count."""
import pytest
import torch
from runtime_toys import toy_runner

from keypose_ext.utils.errors import UserRuntimeError, UserValueError

# 8 samples, batch 2, no shuffling: sample 5 is in the 3rd batch (iteration 3, 7, ...)
BAD = (5, )


def _hook(**kw):
    return dict(non_finite_loss=dict(type='NonFiniteLossHook', **kw))


def test_control_without_the_hook_the_weights_become_nan(tmp_path):
    runner = toy_runner(
        tmp_path, max_epochs=1, bad=BAD, checkpoint=dict(type='CheckpointHook', interval=-1))
    runner.train()
    assert torch.isnan(runner.model.fc.weight).all()


def test_stop_names_the_iteration_and_terms_and_keeps_the_weights(tmp_path):
    runner = toy_runner(
        tmp_path,
        max_epochs=2,
        bad=BAD,
        hooks=_hook(),
        checkpoint=dict(type='KeyposeCheckpointHook', interval=1, by_epoch=False))
    weights = []

    from mmengine.hooks import Hook

    class Record(Hook):

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            weights.append(runner.model.fc.weight.detach().clone())

    runner.register_hook(Record(), priority='HIGHEST')
    with pytest.raises(UserRuntimeError) as err:
        runner.train()
    msg = str(err.value)
    assert '\n' not in msg
    assert msg.startswith('iteration 3 (epoch 1): non-finite loss (loss=nan)')
    assert 'Last checkpoint: ' + str(tmp_path / 'iter_2.pth') in msg
    assert torch.isfinite(runner.model.fc.weight).all()
    assert torch.equal(weights[-1], weights[-2])  # no optimizer step at iteration 3
    assert (tmp_path / 'last_checkpoint').read_text() == str(tmp_path / 'iter_2.pth')
    assert not (tmp_path / 'iter_3.pth').exists()


def test_skip_counts_and_finishes_with_finite_weights(tmp_path):
    runner = toy_runner(tmp_path, max_epochs=2, bad=BAD, hooks=_hook(action='skip'))
    runner.train()
    assert torch.isfinite(runner.model.fc.weight).all()
    assert runner.message_hub.get_info('nonfinite_skipped_steps') == 2  # one per epoch
    assert runner.message_hub.get_scalar('train/skipped_steps').current() == 2
    # the count is in the checkpoint, so a resumed run keeps counting from it
    from keypose_ext.utils.safe_checkpoint_globals import mmengine_checkpoint_globals
    with mmengine_checkpoint_globals():
        ckpt = torch.load(tmp_path / 'epoch_2.pth', weights_only=True)
    assert ckpt['message_hub']['runtime_info']['nonfinite_skipped_steps'] == 2


def test_skip_keeps_the_accumulation_count(tmp_path):
    runner = toy_runner(
        tmp_path,
        max_epochs=1,
        bad=BAD,
        hooks=_hook(action='skip'),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=1e-3), accumulative_counts=2))
    runner.train()
    assert runner.optim_wrapper._inner_count == 4  # 4 iterations, one of them skipped
    assert torch.isfinite(runner.model.fc.weight).all()


def test_too_many_skips_in_a_row_stop(tmp_path):
    runner = toy_runner(
        tmp_path,
        max_epochs=1,
        bad=(2, 3, 4, 5),
        hooks=_hook(action='skip', max_consecutive_skips=1))
    with pytest.raises(UserRuntimeError, match=r'iteration 3 .*2 in a row'):
        runner.train()


def test_bad_action_is_a_user_error():
    from mmpose.registry import HOOKS
    with pytest.raises(UserValueError, match='"stop" or "skip"'):
        HOOKS.build(dict(type='NonFiniteLossHook', action='ignore'))

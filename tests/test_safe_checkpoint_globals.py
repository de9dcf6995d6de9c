"""Loading MMEngine checkpoints under torch.load(weights_only=True), inside a scope only."""
import pickle

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer, MessageHub

from keypose_ext.utils.safe_checkpoint_globals import (mmengine_checkpoint_globals,
                                                       mmengine_checkpoint_globals_list)


def _hub_checkpoint(path):
    hub = MessageHub.get_instance('safe_globals_test')
    hub.update_scalar('train/loss', 0.25)
    hub.update_info('meta', dict(seed=np.int64(3), arr=np.arange(3.0)))
    torch.save(dict(message_hub=hub.state_dict()), path)


def test_message_hub_state_loads_inside_the_scope_only(tmp_path):
    _hub_checkpoint(tmp_path / 'c.pth')
    with pytest.raises(pickle.UnpicklingError):  # torch's default, unchanged by import
        torch.load(tmp_path / 'c.pth', weights_only=True)
    with mmengine_checkpoint_globals():
        state = torch.load(tmp_path / 'c.pth', weights_only=True)
    buf = state['message_hub']['log_scalars']['train/loss']
    assert isinstance(buf, HistoryBuffer) and buf.current() == 0.25
    with pytest.raises(pickle.UnpicklingError):  # and the scope is closed again
        torch.load(tmp_path / 'c.pth', weights_only=True)


def test_scope_keeps_what_the_process_had_allowed():
    torch.serialization.add_safe_globals([HistoryBuffer])
    try:
        with mmengine_checkpoint_globals():
            pass
        assert HistoryBuffer in torch.serialization.get_safe_globals()
    finally:
        torch.serialization.clear_safe_globals()
    with mmengine_checkpoint_globals():
        allowed = set(torch.serialization.get_safe_globals())
    assert set(mmengine_checkpoint_globals_list()) <= allowed


def test_getattr_is_not_generally_allowed(tmp_path):

    class Evil:

        def __reduce__(self):
            return getattr, (np.ndarray, 'tofile')

    torch.save({'x': Evil()}, tmp_path / 'evil.pth')
    with mmengine_checkpoint_globals(), pytest.raises(pickle.UnpicklingError, match='tofile'):
        torch.load(tmp_path / 'evil.pth', weights_only=True)


def test_code_running_pickles_stay_refused(tmp_path):
    import os

    class Evil:

        def __reduce__(self):
            return os.system, ('echo pwned', )

    torch.save({'x': Evil()}, tmp_path / 'evil.pth')
    with mmengine_checkpoint_globals(), pytest.raises(pickle.UnpicklingError, match='posix.system'):
        torch.load(tmp_path / 'evil.pth', weights_only=True)

"""``--resume`` on torch >= 2.6 without turning weights_only off."""
import pickle

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer, MessageHub
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch.utils.data import Dataset


def test_message_hub_state_loads_with_weights_only(tmp_path):
    hub = MessageHub.get_instance('safe_globals_test')
    hub.update_scalar('train/loss', 0.25)
    hub.update_info('meta', dict(seed=np.int64(3), arr=np.arange(3.0)))
    torch.save(dict(message_hub=hub.state_dict()), tmp_path / 'c.pth')
    state = torch.load(tmp_path / 'c.pth', weights_only=True)
    buf = state['message_hub']['log_scalars']['train/loss']
    assert isinstance(buf, HistoryBuffer) and buf.current() == 0.25


def test_getattr_is_not_generally_allowed(tmp_path):
    class Evil:
        def __reduce__(self):
            return getattr, (np.ndarray, 'tofile')

    torch.save({'x': Evil()}, tmp_path / 'evil.pth')
    with pytest.raises(pickle.UnpicklingError, match='tofile'):
        torch.load(tmp_path / 'evil.pth', weights_only=True)


class _Toy(BaseModel):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(2, 1)

    def forward(self, inputs, targets=None, mode='loss'):
        inputs = torch.stack(inputs) if isinstance(inputs, list) else inputs
        return dict(loss=((self.fc(inputs) - 1) ** 2).mean())


class _Data(Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, i):
        return dict(inputs=torch.full((2,), float(i)))


def _runner(work_dir, max_epochs, resume):
    return Runner(
        model=_Toy(), work_dir=str(work_dir),
        train_dataloader=dict(dataset=_Data(), sampler=dict(type='DefaultSampler', shuffle=False),
                              batch_size=2, collate_fn=dict(type='default_collate')),
        optim_wrapper=dict(optimizer=dict(type='Adam', lr=1e-2)),
        train_cfg=dict(by_epoch=True, max_epochs=max_epochs),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=1),
                           logger=dict(type='LoggerHook', interval=1)),
        resume=resume, default_scope='mmengine', experiment_name=f'toy{max_epochs}{resume}')


def test_runner_resumes_with_default_torch_load(tmp_path):
    _runner(tmp_path, 2, False).train()
    resumed = _runner(tmp_path, 3, True)
    resumed.train()
    assert resumed.epoch == 3 and resumed.iter == 6  # continued from epoch 2, iter 4
    ckpt = torch.load(tmp_path / 'epoch_3.pth', weights_only=True)
    assert ckpt['meta']['epoch'] == 3

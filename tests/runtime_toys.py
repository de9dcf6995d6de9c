"""A tiny model, data set and metric for the runtime tests (runner, hooks, loop).

Each runner gets its own experiment name, so several can live in one process.
"""
import itertools

import numpy as np
import torch
from mmengine.evaluator import BaseMetric
from mmengine.model import BaseModel
from mmengine.structures import BaseDataElement, InstanceData
from torch.utils.data import Dataset

from keypose_ext.engine.runners.keypose_runner import KeyposeRunner

_names = itertools.count()


class ToyModel(BaseModel):
    """y = w x + b on 2 features; ``predict`` returns (1, 1, 2) keypoints per sample.

    ``nan_predictions`` makes every prediction NaN; ``dropout`` draws random numbers in
    training (to check that random states are restored).
    """

    def __init__(self, dropout: float = 0.0):
        super().__init__()
        self.fc = torch.nn.Linear(2, 1)
        self.dropout = torch.nn.Dropout(dropout)
        self.nan_predictions = False

    def forward(self, inputs, data_samples=None, mode='loss'):
        inputs = torch.stack(inputs) if isinstance(inputs, list) else inputs
        out = self.fc(self.dropout(inputs))
        if mode == 'loss':
            return dict(loss=((out - inputs.sum(1, keepdim=True))**2).mean())
        preds = []
        for value in out.detach():
            kpt = np.full((1, 1, 2), np.nan if self.nan_predictions else float(value))
            preds.append(BaseDataElement(pred_instances=InstanceData(keypoints=kpt)))
        return preds


class ToyData(Dataset):
    """Sample i is (i, 1); the samples in ``bad`` are (NaN, 1): a NaN loss."""

    def __init__(self, n=8, bad=()):
        self.n = n
        self.bad = set(bad)

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return dict(inputs=torch.tensor([float('nan') if i in self.bad else float(i), 1.0]))


class ToyPCK(BaseMetric):
    """Fraction of finite predictions, a PCK-like score: NaN predictions score 0."""
    default_prefix = 'toy'

    def process(self, data_batch, data_samples):
        for s in data_samples:
            self.results.append(float(np.isfinite(s['pred_instances']['keypoints']).all()))

    def compute_metrics(self, results):
        return dict(PCK=float(np.mean(results)))


def toy_cfg(work_dir,
            max_epochs=2,
            checkpoint=None,
            n=8,
            batch_size=2,
            shuffle=False,
            validate=False,
            bad=(),
            hooks=None,
            **extra):
    loader = dict(
        dataset=ToyData(n, bad),
        batch_size=batch_size,
        num_workers=0,
        sampler=dict(type='DefaultSampler', shuffle=shuffle),
        collate_fn=dict(type='default_collate'))
    cfg = dict(
        model=ToyModel(),
        work_dir=str(work_dir),
        train_dataloader=loader,
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=1e-3)),
        train_cfg=dict(type='KeyposeEpochBasedTrainLoop', max_epochs=max_epochs),
        default_hooks=dict(
            checkpoint=checkpoint or dict(type='KeyposeCheckpointHook', interval=1),
            logger=dict(type='LoggerHook', interval=1),
            **(hooks or {})),
        randomness=dict(seed=0),
        default_scope='mmpose',
        log_level='WARNING',
        experiment_name=f'toy{next(_names)}')
    if validate:
        cfg.update(
            val_dataloader=dict(loader, sampler=dict(type='DefaultSampler', shuffle=False)),
            val_cfg=dict(),
            val_evaluator=dict(type=ToyPCK))
    cfg.update(extra)
    return cfg


def toy_runner(work_dir, runner_cls=KeyposeRunner, **kwargs):
    # keyword arguments, not a Config: its pretty_text cannot print the objects here
    return runner_cls(**toy_cfg(work_dir, **kwargs))

"""The global random states a training run draws from, for checkpoints.

MMEngine seeds the run once at the start and does not save the random states, so a
resumed run draws different random numbers (augmentations in the main process,
dropout) than an uninterrupted one. ``KeyposeCheckpointHook`` stores these states in
each checkpoint and ``KeyposeEpochBasedTrainLoop`` puts them back where the
interrupted run was. Every value is a tensor, a numpy array or a builtin, so the
checkpoint still loads with ``torch.load(weights_only=True)`` and keypose_ext's
allow-list.
"""
import random

import numpy as np
import torch


def capture_rng_state() -> dict:
    """Python, numpy and torch (CPU and, once initialised, CUDA) generator states."""
    state = dict(python=random.getstate(), numpy=np.random.get_state(), torch=torch.get_rng_state())
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    """Inverse of :func:`capture_rng_state`; missing entries are left alone."""
    if 'python' in state:
        version, internal, gauss = state['python']
        random.setstate((version, tuple(internal), gauss))
    if 'numpy' in state:
        np.random.set_state(tuple(state['numpy']))
    if 'torch' in state:
        torch.set_rng_state(state['torch'])
    if 'cuda' in state and torch.cuda.is_available():
        cuda = list(state['cuda'])[:torch.cuda.device_count()]
        torch.cuda.set_rng_state_all(cuda)

"""Lets MMEngine checkpoints load under ``torch.load(weights_only=True)``, in a scope.

torch >= 2.6 loads with ``weights_only=True`` by default, and mmengine 0.10.7 calls
``torch.load`` without arguments, so ``--resume`` fails on the globals an MMEngine
checkpoint pickles (numpy arrays/scalars in the meta and message hub, ``HistoryBuffer``).
Instead of switching ``weights_only`` off, the exact types are allow-listed, and only
while one of our own loads runs (``KeyposeRunner.load_checkpoint``/``resume``): importing
keypose_ext leaves every other ``torch.load`` of the process as it was.

``HistoryBuffer`` pickles its statistics methods as ``getattr(HistoryBuffer, 'mean')``.
Allow-listing the real ``builtins.getattr`` would let a checkpoint reach any attribute
of any allowed type, so a restricted stand-in is registered under that name: it only
resolves methods that ``HistoryBuffer`` registered as statistics.

Example (mmpose's own API outside a runner)::

    with mmengine_checkpoint_globals():
        model = init_model(config, 'work_dirs/x/epoch_10.pth')
"""
import contextlib
import pickle
from typing import Iterator, List

import numpy as np
import torch
from mmengine.logging import HistoryBuffer


def _history_buffer_getattr(obj, name):
    """``getattr`` limited to ``HistoryBuffer``'s registered statistics methods."""
    # The built-in four are registered lazily, at the first HistoryBuffer().
    allowed = {'min', 'max', 'current', 'mean', *HistoryBuffer._statistics_methods}
    if obj is HistoryBuffer and name in allowed:
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(
        f'checkpoint asks for getattr({obj!r}, {name!r}); keypose_ext only allows '
        'HistoryBuffer statistics methods. Load it with weights_only=False only if '
        'you trust the file.')


def _numpy_globals() -> list:
    """numpy types found in MMEngine checkpoints (numpy 1.x and 2.x module paths)."""
    core = getattr(np, '_core', None) or np.core
    items = [np.ndarray, np.dtype, core.multiarray._reconstruct, core.multiarray.scalar]
    # numpy 2 pickles dtypes as instances of their per-type classes (np.dtypes.*).
    items += [type(np.dtype(t)) for t in np.sctypeDict.values() if t is not np.void]
    items += [
        np.dtype(t).type
        for t in ('b', 'B', 'h', 'H', 'i', 'I', 'l', 'L', 'q', 'Q', 'e', 'f', 'd', 'g', '?')
    ]
    return items


def mmengine_checkpoint_globals_list() -> List:
    """Everything an MMEngine training checkpoint pickles besides tensors and builtins."""
    return _numpy_globals() + [HistoryBuffer, (_history_buffer_getattr, 'builtins.getattr')]


@contextlib.contextmanager
def mmengine_checkpoint_globals() -> Iterator[None]:
    """Allow-list the MMEngine checkpoint types for ``torch.load`` inside the block.

    Entries the process had allowed before stay allowed afterwards; only what this
    block added is removed on exit.
    """
    if not hasattr(torch.serialization, 'safe_globals'):  # torch < 2.5: nothing to do
        yield
        return
    before = set(torch.serialization.get_safe_globals())
    added = [g for g in mmengine_checkpoint_globals_list() if g not in before]
    with torch.serialization.safe_globals(added):
        yield

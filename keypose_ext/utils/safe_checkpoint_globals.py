"""Lets MMEngine checkpoints load under ``torch.load(weights_only=True)``.

torch >= 2.6 loads with ``weights_only=True`` by default, and mmengine 0.10.7 calls
``torch.load`` without arguments, so ``--resume`` fails on the globals an MMEngine
checkpoint pickles (numpy arrays/scalars in the message hub and ``HistoryBuffer``).
Instead of switching ``weights_only`` off, the exact types are allow-listed.

``HistoryBuffer`` pickles its statistics methods as ``getattr(HistoryBuffer, 'mean')``.
Allow-listing the real ``builtins.getattr`` would let a checkpoint reach any attribute
of any allowed type, so a restricted stand-in is registered under that name: it only
resolves methods that ``HistoryBuffer`` registered as statistics.
"""
import pickle

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


def _numpy_globals():
    """numpy types found in MMEngine checkpoints (numpy 1.x and 2.x module paths)."""
    core = getattr(np, '_core', None) or np.core
    items = [np.ndarray, np.dtype, core.multiarray._reconstruct, core.multiarray.scalar]
    # numpy 2 pickles dtypes as instances of their per-type classes (np.dtypes.*).
    items += [type(np.dtype(t)) for t in np.sctypeDict.values() if t is not np.void]
    items += [np.dtype(t).type for t in ('b', 'B', 'h', 'H', 'i', 'I', 'l', 'L', 'q',
                                          'Q', 'e', 'f', 'd', 'g', '?')]
    return items


def register_safe_checkpoint_globals():
    """Allow-list what MMEngine checkpoints need; safe to call repeatedly."""
    add = getattr(torch.serialization, 'add_safe_globals', None)
    if add is None:  # torch < 2.4 has no weights_only default to worry about
        return
    add(_numpy_globals() + [HistoryBuffer, (_history_buffer_getattr, 'builtins.getattr')])

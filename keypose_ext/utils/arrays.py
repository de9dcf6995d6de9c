"""One conversion of model outputs to float64 numpy, for metrics and visualizers."""
import numpy as np
from mmpose.utils.tensor_utils import to_numpy


def as_float64(x) -> np.ndarray:
    """A tensor (via mmpose's ``to_numpy``) or an array-like as a float64 numpy array."""
    if hasattr(x, 'detach'):
        x = to_numpy(x)
    return np.asarray(x, dtype=np.float64)

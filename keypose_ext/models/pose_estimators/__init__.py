# Each import below registers one component (one per file).
from .cape_estimator import CapeEstimator  # noqa: F401

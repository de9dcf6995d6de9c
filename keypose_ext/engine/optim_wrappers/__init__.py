# Each import below registers one component (one per file).
from .amp_optim_wrapper import AmpOptimWrapper  # noqa: F401

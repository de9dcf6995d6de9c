from . import atomic_local_backend  # noqa: F401  (registers atomic checkpoint writes)
from .safe_checkpoint_globals import register_safe_checkpoint_globals

register_safe_checkpoint_globals()

__all__ = ['register_safe_checkpoint_globals']

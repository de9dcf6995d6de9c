# Importing keypose_ext.utils changes nothing outside the package: the atomic backend
# is registered under its own name, and the checkpoint allow-list is a context manager.
from . import atomic_local_backend  # noqa: F401  (registers 'keypose_atomic_local')
from .safe_checkpoint_globals import mmengine_checkpoint_globals

__all__ = ['mmengine_checkpoint_globals']

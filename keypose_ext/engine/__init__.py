from . import hooks, optim_wrappers, runners  # noqa: F401

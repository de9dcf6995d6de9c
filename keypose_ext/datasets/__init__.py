# Each import below registers one component (one per file).
from . import transforms  # noqa: F401

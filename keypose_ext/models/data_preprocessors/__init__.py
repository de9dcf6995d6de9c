# Each import below registers one component (one per file).
from .cape_data_preprocessor import CapeDataPreprocessor  # noqa: F401

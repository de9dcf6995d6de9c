"""keypose_ext: MMPose 1.x plugins.

Importing this package registers every component into mmpose's registries, so
configs only need ``custom_imports=dict(imports=['keypose_ext'])``.
"""
from . import utils  # noqa: F401,I001  (checkpoint loading fixes come first)
from . import codecs, datasets, engine, evaluation, models, visualization  # noqa: F401

__version__ = '0.1.0'

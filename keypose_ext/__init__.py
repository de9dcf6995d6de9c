"""keypose_ext: MMPose 1.x plugins.

Importing this package registers every component into mmpose's registries under its
own name, so configs only need ``custom_imports=dict(imports=['keypose_ext'])``. It
changes no upstream behaviour: no registered name of mmengine/mmpose is replaced and no
process-wide setting (file backends, ``torch.load``'s allow-list) is touched.
"""
from . import codecs, datasets, engine, evaluation, models, utils, visualization  # noqa: F401

__version__ = '0.1.0'

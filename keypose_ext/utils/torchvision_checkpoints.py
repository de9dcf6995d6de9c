"""``torchvision://`` checkpoints (ImageNet backbones): one clear error when offline.

The CAPE ResNet configs start from ``init_cfg=dict(type='Pretrained',
checkpoint='torchvision://resnet50')``, MMPose's standard. MMEngine maps the name to a
download URL and torch hub keeps the file in ``<torch hub dir>/checkpoints/``
(``~/.cache/torch/hub/checkpoints``, or ``$TORCH_HOME/hub/checkpoints``); with the file
there, nothing is downloaded. Without it and without network, the download fails deep
inside urllib. Within :func:`torchvision_download_errors` (``KeyposeRunner`` initialises
the model weights in it) that failure is one line naming the URL and where to put the
file; outside it, MMEngine's loader is untouched.
"""
import contextlib
import http.client
import os.path as osp
from typing import Iterator
from urllib.parse import urlparse

import torch
from mmengine.runner.checkpoint import (CheckpointLoader, get_torchvision_models,
                                        load_from_torchvision)

from .errors import UserFileNotFoundError, UserValueError

PREFIXES = ('modelzoo://', 'torchvision://')


def torchvision_cache_path(url: str) -> str:
    """Where torch hub looks for (and saves) the file of ``url``."""
    return osp.join(torch.hub.get_dir(), 'checkpoints', osp.basename(urlparse(url).path))


def load_from_torchvision_checked(filename: str, map_location=None):
    """MMEngine's ``load_from_torchvision``; a name or download failure is a user error."""
    name = filename.split('://', 1)[1].lower().replace('_weights', '')
    url = get_torchvision_models().get(name)
    if url is None:
        raise UserValueError(f'checkpoint {filename!r}: torchvision has no weights called '
                             f'{name!r}; use e.g. torchvision://resnet50')
    try:
        return load_from_torchvision(filename, map_location)
    except (OSError, http.client.HTTPException) as e:  # URLError, timeouts, resets
        raise UserFileNotFoundError(
            f'cannot fetch the ImageNet weights {filename} from {url} ({e}), and they are not '
            f'in the torch hub cache; offline, download that URL elsewhere and copy the file '
            f'to {torchvision_cache_path(url)} (TORCH_HOME moves the cache), or set '
            'model.backbone.init_cfg=None to train from scratch') from None


@contextlib.contextmanager
def torchvision_download_errors() -> Iterator[None]:
    """Load ``torchvision://`` checkpoints with :func:`load_from_torchvision_checked`."""
    before = {p: CheckpointLoader._schemes.get(p) for p in PREFIXES}
    CheckpointLoader.register_scheme(PREFIXES, load_from_torchvision_checked, force=True)
    try:
        yield
    finally:
        for prefix, loader in before.items():
            CheckpointLoader.register_scheme(prefix, loader or load_from_torchvision, force=True)

"""ImageNet weights for the CAPE ResNet configs (``torchvision://``), without network:
loaded from the torch hub cache, and one clear line when they are absent offline
(keypose_ext/utils/torchvision_checkpoints.py, used by KeyposeRunner)."""
import os
import os.path as osp
import urllib.error

import pytest
import torch
import torchvision
from mmengine.config import Config
from mmengine.runner.checkpoint import CheckpointLoader, get_torchvision_models
from mmpose.registry import MODELS

from keypose_ext.engine.runners.keypose_runner import KeyposeRunner
from keypose_ext.utils.errors import UserFileNotFoundError, UserValueError
from keypose_ext.utils.torchvision_checkpoints import (torchvision_cache_path,
                                                       torchvision_download_errors)

CONFIG = osp.join(
    osp.dirname(__file__), '..', 'configs', 'cape',
    'capeseq_res50_1xb8-200e_mp100-split1-1shot-256x256.py')


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """An empty torch hub cache under tmp_path, and no network."""
    monkeypatch.setenv('TORCH_HOME', str(tmp_path))
    calls = []

    def no_network(url, *args, **kwargs):
        calls.append(url)
        raise urllib.error.URLError('[Errno -3] Temporary failure in name resolution')

    monkeypatch.setattr(torch.hub, 'download_url_to_file', no_network)
    return calls


def test_resnet50_weights_load_from_the_hub_cache(offline, tmp_path):
    backbone_cfg = Config.fromfile(CONFIG).model.backbone
    assert backbone_cfg.init_cfg == dict(type='Pretrained', checkpoint='torchvision://resnet50')
    url = get_torchvision_models()['resnet50']
    path = torchvision_cache_path(url)
    assert path == osp.join(str(tmp_path), 'hub', 'checkpoints', osp.basename(url))

    stock = CheckpointLoader._schemes['torchvision://']
    with pytest.raises(urllib.error.URLError):  # MMEngine's own error, outside the runner
        MODELS.build(backbone_cfg).init_weights()
    runner = object.__new__(KeyposeRunner)  # only what _init_model_weights reads
    runner.model = MODELS.build(backbone_cfg)
    with pytest.raises(UserFileNotFoundError) as err:
        runner._init_model_weights()
    msg = str(err.value)
    assert url in msg and path in msg and 'init_cfg=None' in msg and '\n' not in msg
    assert offline == [url, url]
    assert CheckpointLoader._schemes['torchvision://'] is stock  # restored

    # a torchvision ResNet-50 state dict where torch hub keeps it: loaded, not downloaded
    torch.manual_seed(0)
    state = torchvision.models.resnet50().state_dict()
    os.makedirs(osp.dirname(path), exist_ok=True)  # torch hub made it already
    torch.save(state, path)
    backbone = MODELS.build(backbone_cfg)
    before = backbone.conv1.weight.detach().clone()
    backbone.init_weights()
    own = backbone.state_dict()
    loaded = [k for k in state if not k.startswith('fc.')]  # no classifier in a backbone
    assert len(loaded) == len(own)
    for key in loaded:
        assert torch.equal(own[key], state[key]), key
    assert not torch.equal(before, own['conv1.weight'])
    assert offline == [url, url]  # still the two failed attempts


def test_unknown_weights_name(offline):
    backbone = MODELS.build(
        dict(
            type='ResNet',
            depth=18,
            init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet19')))
    with pytest.raises(UserValueError, match="torchvision has no weights called 'resnet19'"):
        with torchvision_download_errors():
            backbone.init_weights()
    assert offline == []

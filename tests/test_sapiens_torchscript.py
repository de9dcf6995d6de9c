"""keypose_ext/utils/sapiens_torchscript.py (reading a pretrain file) and sapiens_archs.py."""
import warnings
import zipfile

import pytest
import torch
from sapiens_test_utils import TINY_ARCH, make_tiny_trace

from keypose_ext.models.backbones.sapiens_torchscript_backbone import SapiensTorchScriptBackbone
from keypose_ext.utils.errors import KeyposeUserError
from keypose_ext.utils.sapiens_archs import (SAPIENS_ARCHS, resolve_phase2, resolve_sapiens_arch,
                                             sapiens_arch_name)
from keypose_ext.utils.sapiens_torchscript import (detect_checkpoint_format, encoder_state_dict,
                                                   inspect_encoder)


@pytest.fixture(scope='module')
def mae_file(tmp_path_factory):
    return make_tiny_trace(tmp_path_factory.mktemp('ts') / 'tiny_mae.pt2')[0]


def test_inspect_and_encoder_state_dict_of_a_meta_structured_file(mae_file):
    ts = torch.jit.load(mae_file)
    sd = ts.state_dict()
    info = inspect_encoder(mae_file, ts, sd, 'custom', dict(TINY_ARCH, patch_size=16))
    assert info['prefix'] == 'backbone.' and info['n_extra'] == 1
    assert info['grid'] == (4, 4) and info['traced_size'] == (64, 64)
    assert info['conv'] == ([16, 16], [0, 0])  # the pretrain conv has no padding
    enc, ignored = encoder_state_dict(sd, info)
    assert enc['pos_embed'].shape == (1, 16, 32) and 'cls_token' not in enc
    assert torch.equal(enc['pos_embed'], sd['backbone.pos_embed'][:, 1:])
    assert 'backbone.cls_token' in ignored
    assert any(k.startswith('neck.') for k in ignored)
    assert not any(k.startswith('backbone.layers') for k in ignored)


def test_sapiens_arch_names_and_phase2_routes():
    assert resolve_sapiens_arch('1b')[1] == SAPIENS_ARCHS['sapiens_1b']
    assert resolve_sapiens_arch('SAPIENS_0.3B')[0] == 'sapiens_0.3b'
    with pytest.raises(ValueError, match="unknown Sapiens arch '3b'.*sapiens_2b"):
        resolve_sapiens_arch('3b')
    with pytest.raises(KeyposeUserError, match='lacks'):
        resolve_sapiens_arch(dict(embed_dims=32))
    assert sapiens_arch_name(1536, 40) == 'sapiens_1b' and sapiens_arch_name(32, 3) is None
    assert resolve_phase2(dict(trainable_layers=2))['mode'] == 'last_blocks'
    assert resolve_phase2(None) == dict(mode='full', trainable_layers=-1, with_cp=None)
    assert resolve_phase2(dict(mode='lora', with_cp=True))['with_cp'] is True
    with pytest.raises(ValueError, match="unknown keys \\['lr'\\]"):
        resolve_phase2(dict(lr=1e-4))
    with pytest.raises(ValueError, match="'last_blocks' needs phase2.trainable_layers"):
        resolve_phase2(dict(mode='last_blocks'))


# ----------------------------------------------------------------- bad input
def test_missing_file_names_the_download_tool(tmp_path):
    b = SapiensTorchScriptBackbone(
        checkpoint=str(tmp_path / 'nope.pt2'), arch=dict(TINY_ARCH), img_size=(32, 32))
    with pytest.raises(FileNotFoundError, match='nope.pt2.*tools/download_pretrained.py'):
        b.init_weights()


def test_non_torchscript_files_are_named(tmp_path):

    class Lin(torch.nn.Module):

        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(3, 3)

        def forward(self, x):
            return self.lin(x)

    export = tmp_path / 'exported.pt2'
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        torch.export.save(torch.export.export(Lin(), (torch.randn(2, 3), )), str(export))
    saved = tmp_path / 'state.pth'
    torch.save(Lin().state_dict(), str(saved))
    lfs = tmp_path / 'lfs.pt2'
    lfs.write_text('version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 4\n')
    junk = tmp_path / 'junk.pt2'
    junk.write_bytes(b'\x00' * 100)
    assert detect_checkpoint_format(str(export)) == 'torch_export'
    for path, msg in [(export, 'torch.export'), (saved, 'torch.save checkpoint'),
                      (lfs, 'Git LFS pointer'), (junk, 'not a TorchScript file')]:
        b = SapiensTorchScriptBackbone(
            checkpoint=str(path), arch=dict(TINY_ARCH), img_size=(32, 32))
        with pytest.raises(KeyposeUserError, match=msg):
            b.init_weights()


def test_file_of_another_arch(mae_file):
    b = SapiensTorchScriptBackbone(
        checkpoint=mae_file, img_size=(32, 32), arch=dict(TINY_ARCH, embed_dims=48, num_heads=4))
    with pytest.raises(ValueError, match='embed_dims expected 48, found 32'):
        b.init_weights()
    fewer = SapiensTorchScriptBackbone(
        checkpoint=mae_file, img_size=(32, 32), arch=dict(TINY_ARCH, num_layers=2))
    with pytest.raises(ValueError, match='num_layers expected 2, found 3'):
        fewer.init_weights()
    # same weight shapes, different head count: only running the block shows it
    # (checked on float32 copies, so fp16 storage or adapters do not hide it)
    heads = SapiensTorchScriptBackbone(
        checkpoint=mae_file,
        img_size=(32, 32),
        arch=dict(TINY_ARCH, num_heads=2),
        lora=dict(rank=2),
        trainable_layers=0,
        frozen_dtype='float16')
    with pytest.raises(KeyposeUserError, match='layers.0 .*differ.*num_heads'):
        heads.init_weights()


def test_detect_format_of_trace(mae_file):
    assert detect_checkpoint_format(mae_file) == 'torchscript'
    assert zipfile.is_zipfile(mae_file)

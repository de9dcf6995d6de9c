import warnings
import zipfile

import pytest
import torch
from sapiens_test_utils import TINY_ARCH, make_tiny_trace

from keypose_ext.models.backbones.sapiens_torchscript_backbone import (
    SAPIENS_ARCHS, SapiensTorchScriptBackbone, detect_checkpoint_format,
    resolve_sapiens_arch, sapiens_arch_name)


@pytest.fixture(scope='module')
def tiny_file(tmp_path_factory):
    return make_tiny_trace(tmp_path_factory.mktemp('ts') / 'tiny_torchscript.pt2')


def _build(path, **kw):
    kw.setdefault('arch', dict(TINY_ARCH))
    kw.setdefault('img_size', (48, 32))
    b = SapiensTorchScriptBackbone(checkpoint=path, **kw)
    b.init_weights()
    return b


def test_eager_equals_trace_at_traced_size(tiny_file):
    path, ref = tiny_file
    b = _build(path, img_size=(64, 64), use_torchscript=False).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        out, = b(x)
        expected, = ref(x)
    assert b.last_forward_path == 'eager'
    assert out.shape == (2, 32, 4, 4)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_torchscript_path_at_traced_size_eager_at_training_size(tiny_file):
    path, ref = tiny_file
    b = _build(path).eval()  # trained at 48x32: position embedding 4x4 -> 3x2
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        out, = b(x)
        expected, = ref(x)
    assert b.last_forward_path == 'torchscript'
    torch.testing.assert_close(out, expected)
    with torch.no_grad():
        small, = b(torch.randn(2, 3, 48, 32))
    assert b.last_forward_path == 'eager' and small.shape == (2, 32, 3, 2)
    # the resized embedding is a bicubic resize of the traced 4x4 grid
    from mmpretrain.models.utils import resize_pos_embed
    want = resize_pos_embed(ref.backbone.pos_embed.detach(), (4, 4), (3, 2), 'bicubic', 0)
    torch.testing.assert_close(b.pos_embed.detach(), want)
    # gradients needed -> never the trace (it cannot checkpoint or freeze parts)
    b(x)[0].sum().backward()
    assert b.last_forward_path == 'eager' and b.layers[0].attn.qkv.weight.grad is not None


def test_trace_shares_parameters_and_follows_finetuning(tiny_file):
    path, ref = tiny_file
    b = _build(path).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        before, = b(x)
        b.layers[1].ffn.layers[1].weight.mul_(0.5)  # "fine-tuned" block
        b.pos_embed.add_(0.3)
        after, = b(x)
    assert b.last_forward_path == 'torchscript'
    assert not torch.allclose(before, after)
    ts = b.__dict__['_ts']
    ts_fc2 = getattr(getattr(ts.backbone.layers, '1').ffn.layers, '1')
    assert ts_fc2.weight.data_ptr() == b.layers[1].ffn.layers[1].weight.data_ptr()
    from mmpretrain.models.utils import resize_pos_embed
    torch.testing.assert_close(
        ts.backbone.pos_embed, resize_pos_embed(b.pos_embed.detach(), (3, 2), (4, 4),
                                                'bicubic', 0))


def test_frozen_fp16_state_and_train_mode(tiny_file):
    path, ref = tiny_file
    b = _build(path, trainable_layers=0, frozen_dtype='float16')
    assert all(p.dtype == torch.float16 and not p.requires_grad for p in b.parameters())
    assert b.train() is b  # mmpretrain's train() returns None; ours returns self
    assert b.training and not any(m.training for m in b.layers)
    assert not b.patch_embed.training and not b.ln1.training
    out, = b(torch.randn(2, 3, 48, 32))
    assert out.dtype == torch.float32 and not out.requires_grad
    with torch.no_grad():
        ts_out, = b(torch.randn(1, 3, 64, 64))
    assert b.last_forward_path == 'torchscript' and ts_out.dtype == torch.float32


def test_partial_unfreeze_keeps_parameter_objects_and_checkpointing_matches(tiny_file):
    path, _ = tiny_file
    b = _build(path, trainable_layers=0, frozen_dtype='float16')
    ids = [id(p) for p in b.parameters()]
    b.set_trainable_layers(1)
    assert [id(p) for p in b.parameters()] == ids
    assert all(p.dtype == torch.float32 and p.requires_grad
               for p in list(b.layers[2].parameters()) + list(b.ln1.parameters()))
    assert all(p.dtype == torch.float16 and not p.requires_grad
               for p in list(b.layers[1].parameters()) + [b.pos_embed])
    b.train()
    assert b.layers[2].training and not b.layers[1].training
    x = torch.randn(2, 3, 48, 32)
    grads = {}
    for cp in (False, True):
        b.with_cp = cp
        b.zero_grad()
        b(x)[0].square().mean().backward()
        grads[cp] = b.layers[2].ffn.layers[0][0].weight.grad.clone()
        assert b.layers[1].attn.qkv.weight.grad is None
    torch.testing.assert_close(grads[False], grads[True])
    with torch.no_grad():  # validation in phase 2: mixed fp16/fp32 weights -> eager
        out, = b.eval()(torch.randn(1, 3, 64, 64))
    assert b.last_forward_path == 'eager' and out.dtype == torch.float32
    b.set_trainable_layers(-1)
    assert all(p.requires_grad and p.dtype == torch.float32 for p in b.parameters())


def test_cls_token_file_loads_and_trace_path_runs(tmp_path):
    path, ref = make_tiny_trace(tmp_path / 'cls.pt2', with_cls_token=True)
    b = _build(path, trainable_layers=0, frozen_dtype='float16')
    assert b.pos_embed.shape == (1, 6, 32)  # cls token dropped, 3x2 grid
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        out, = b(x)
        want, = ref(x)
    # the trace keeps its own cls token (cast to fp16 with the shared weights)
    assert b.last_forward_path == 'torchscript' and out.shape == (1, 32, 4, 4)
    torch.testing.assert_close(out, want, atol=0.05, rtol=0.05)


def test_registry_builds_it(tiny_file):
    from mmpose.registry import MODELS
    b = MODELS.build(dict(type='SapiensTorchScriptBackbone', checkpoint=tiny_file[0],
                          arch=dict(TINY_ARCH), img_size=(32, 32)))
    b.init_weights()
    assert b(torch.randn(1, 3, 32, 32))[0].shape == (1, 32, 2, 2)


def test_sapiens_arch_names():
    assert resolve_sapiens_arch('1b')[1] == SAPIENS_ARCHS['sapiens_1b']
    assert resolve_sapiens_arch('SAPIENS_0.3B')[0] == 'sapiens_0.3b'
    assert SAPIENS_ARCHS['sapiens_1b']['embed_dims'] == 1536
    with pytest.raises(ValueError, match="unknown Sapiens arch '3b'.*sapiens_2b"):
        resolve_sapiens_arch('3b')
    with pytest.raises(ValueError, match='lacks'):
        resolve_sapiens_arch(dict(embed_dims=32))
    # used in the "file of another arch" message to name the fix
    assert sapiens_arch_name(1536, 40) == 'sapiens_1b'
    assert sapiens_arch_name(32, 3) is None


# ----------------------------------------------------------------- bad input
def test_missing_file_names_the_download_tool(tmp_path):
    b = SapiensTorchScriptBackbone(checkpoint=str(tmp_path / 'nope.pt2'),
                                   arch=dict(TINY_ARCH), img_size=(32, 32))
    with pytest.raises(FileNotFoundError, match='nope.pt2.*tools/download_pretrained.py'):
        b.init_weights()


def test_non_torchscript_files_are_named(tmp_path):
    class Lin(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.l = torch.nn.Linear(3, 3)

        def forward(self, x):
            return self.l(x)

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
        b = SapiensTorchScriptBackbone(checkpoint=str(path), arch=dict(TINY_ARCH),
                                       img_size=(32, 32))
        with pytest.raises(ValueError, match=msg):
            b.init_weights()


def test_file_of_another_arch(tmp_path, tiny_file):
    b = SapiensTorchScriptBackbone(checkpoint=tiny_file[0], img_size=(32, 32),
                                   arch=dict(TINY_ARCH, embed_dims=48, num_heads=4))
    with pytest.raises(ValueError, match='embed_dims expected 48, found 32'):
        b.init_weights()
    fewer = SapiensTorchScriptBackbone(checkpoint=tiny_file[0], img_size=(32, 32),
                                       arch=dict(TINY_ARCH, num_layers=2))
    with pytest.raises(ValueError, match='num_layers expected 2, found 3'):
        fewer.init_weights()
    # same weight shapes, different head count: only running the block shows it
    # (checked with the file's fp32 weights, so fp16 storage does not hide it)
    heads = SapiensTorchScriptBackbone(checkpoint=tiny_file[0], img_size=(32, 32),
                                       arch=dict(TINY_ARCH, num_heads=2),
                                       trainable_layers=0, frozen_dtype='float16')
    with pytest.raises(ValueError, match='layers.0 .*differ.*num_heads'):
        heads.init_weights()


def test_sizes_not_multiple_of_patch(tiny_file):
    with pytest.raises(ValueError, match=r'img_size \(380, 288\).*multiples of patch_size=16'
                       r'.*\(384, 288\)'):
        SapiensTorchScriptBackbone(arch=dict(TINY_ARCH), img_size=(380, 288))
    b = _build(tiny_file[0])
    with pytest.raises(ValueError, match=r'input 50x32 .*patch_size=16.*\(48, 32\)'):
        b(torch.randn(1, 3, 50, 32))
    with pytest.raises(ValueError, match='trainable_layers=7'):
        b.set_trainable_layers(7)
    with pytest.raises(ValueError, match='frozen_dtype'):
        SapiensTorchScriptBackbone(arch=dict(TINY_ARCH), img_size=(32, 32),
                                   frozen_dtype='int8')


def test_detect_format_of_trace(tiny_file):
    assert detect_checkpoint_format(tiny_file[0]) == 'torchscript'
    assert zipfile.is_zipfile(tiny_file[0])

import pytest
import torch
from mmpretrain.models.backbones import VisionTransformer
from mmpretrain.models.utils import resize_pos_embed
from sapiens_test_utils import TINY_ARCH, make_tiny_trace

from keypose_ext.models.backbones.sapiens_torchscript_backbone import SapiensTorchScriptBackbone
from keypose_ext.utils.sapiens_lora import SapiensLoRALinear

LORA = dict(rank=4, alpha=8)


@pytest.fixture(scope='module')
def mae_file(tmp_path_factory):
    """Meta's structure: MAE with cls token, decoder neck, preprocessor buffers."""
    return make_tiny_trace(tmp_path_factory.mktemp('ts') / 'tiny_mae_torchscript.pt2')


@pytest.fixture(scope='module')
def plain_file(tmp_path_factory):
    """A ViT traced without cls token (e.g. a re-traced fine-tuning backbone)."""
    return make_tiny_trace(tmp_path_factory.mktemp('ts') / 'tiny_vit.pt2', mae=False)


def _build(path, **kw):
    kw.setdefault('arch', dict(TINY_ARCH))
    kw.setdefault('img_size', (48, 32))
    b = SapiensTorchScriptBackbone(checkpoint=path, **kw)
    b.init_weights()
    return b


def test_meta_structured_file_loads_as_mmpretrain_drops_the_cls_token(mae_file):
    path, mae = mae_file
    traced = torch.jit.load(path)
    assert traced.backbone.pos_embed.shape == (1, 1 + 16, 32)  # cls position first
    keys = traced.state_dict()
    assert any(k.startswith('neck.') for k in keys) and 'backbone.cls_token' in keys
    out, = traced(torch.randn(1, 3, 64, 64))  # a 1-tuple, like Meta's file
    assert out.shape == (1, 32, 4, 4)
    b = _build(path, img_size=(64, 64)).eval()
    # Meta's pose recipe: mmpretrain's ViT without cls token on the encoder's weights,
    # its load hook dropping the cls position of pos_embed
    ref = VisionTransformer(
        arch=dict(TINY_ARCH),
        img_size=64,
        qkv_bias=True,
        final_norm=True,
        with_cls_token=False,
        out_type='featmap',
        norm_cfg=dict(type='LN', eps=1e-6))
    ref.eval()  # mmpretrain's train()/eval() return None
    enc = {k: v for k, v in mae.backbone.state_dict().items() if k != 'cls_token'}
    ref.load_state_dict(enc)
    torch.testing.assert_close(b.pos_embed, mae.backbone.pos_embed[:, 1:])
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(b(x)[0], ref(x)[0], atol=1e-5, rtol=1e-5)
        small, = _build(path).eval()(torch.randn(2, 3, 48, 32))
    assert small.shape == (2, 32, 3, 2)


def test_plain_file_eager_equals_trace(plain_file):
    path, ref = plain_file
    b = _build(path, img_size=(64, 64)).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(b(x)[0], ref(x)[0], atol=1e-5, rtol=1e-5)
    small = _build(path)  # trained at 48x32: position grid 4x4 -> 3x2, bicubic
    want = resize_pos_embed(ref.backbone.pos_embed.detach(), (4, 4), (3, 2), 'bicubic', 0)
    torch.testing.assert_close(small.pos_embed.detach(), want)


def test_frozen_fp16_state_and_train_mode(mae_file):
    b = _build(mae_file[0], trainable_layers=0, frozen_dtype='float16')
    assert all(p.dtype == torch.float16 and not p.requires_grad for p in b.parameters())
    assert b.train() is b  # mmpretrain's train() returns None; ours returns self
    assert b.training and not any(m.training for m in b.layers)
    assert not b.patch_embed.training and not b.ln1.training
    out, = b(torch.randn(2, 3, 48, 32))
    assert out.dtype == torch.float32 and not out.requires_grad
    assert b.finetune_mode == 'frozen'


def test_last_blocks_keep_parameter_objects_and_checkpointing_matches(mae_file):
    b = _build(mae_file[0], trainable_layers=0, frozen_dtype='float16')
    ids = [id(p) for p in b.parameters()]
    b.set_trainable_layers(1)
    assert [id(p) for p in b.parameters()] == ids and b.finetune_mode == 'last_blocks'
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
    b.set_trainable_layers(-1)
    assert all(p.requires_grad and p.dtype == torch.float32 for p in b.parameters())


def test_lora_adapters_on_every_block_start_at_zero(mae_file):
    plain = _build(mae_file[0]).eval()
    b = _build(mae_file[0], lora=LORA, trainable_layers=0, frozen_dtype='float16')
    wrapped = [n for n, m in b.named_modules() if isinstance(m, SapiensLoRALinear)]
    assert len(wrapped) == 4 * TINY_ARCH['num_layers']  # qkv, proj, fc1, fc2 per block
    x = torch.randn(2, 3, 48, 32)
    with torch.no_grad():
        torch.testing.assert_close(b.eval()(x)[0], plain(x)[0], atol=2e-2, rtol=2e-2)
    ids = [id(p) for p in b.parameters()]
    b.set_lora_trainable(with_cp=True)
    assert [id(p) for p in b.parameters()] == ids and b.finetune_mode == 'lora'
    trainable = {n for n, p in b.named_parameters() if p.requires_grad}
    assert trainable == {
        n
        for n in dict(b.named_parameters()) if '.lora_' in n or n.startswith('ln1.')
    }
    assert b.layers[0].attn.qkv.original_layer.weight.dtype == torch.float16
    b.train()
    assert all(m.training for m in b.layers) and not b.patch_embed.training
    grads = {}
    for cp in (False, True):
        b.with_cp = cp
        b.zero_grad()
        b(x)[0].square().mean().backward()
        # every block's adapters get gradients (fp16 base upcast on the CPU, no underflow)
        assert all(b.layers[i].ffn.layers[1].lora_up.weight.grad.abs().sum() > 0 for i in range(3))
        assert b.layers[0].attn.qkv.original_layer.weight.grad is None
        grads[cp] = b.layers[0].attn.qkv.lora_up.weight.grad.clone()
    torch.testing.assert_close(grads[False], grads[True])


def test_lora_state_dicts_load_into_plain_models_merged_and_back(mae_file):
    b = _build(mae_file[0], lora=LORA, img_size=(32, 32))
    with torch.no_grad():
        for m in b.modules():
            if isinstance(m, SapiensLoRALinear):
                m.lora_up.weight.normal_(0, 0.1)  # "trained" adapters
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        want, = b.eval()(x)
    plain = SapiensTorchScriptBackbone(arch=dict(TINY_ARCH), img_size=(32, 32)).eval()
    plain.load_state_dict(b.state_dict())  # adapters merged by the load hook
    assert 'layers.0.attn.qkv.weight' in plain.state_dict()
    with torch.no_grad():
        torch.testing.assert_close(plain(x)[0], want, atol=1e-5, rtol=1e-5)
    back = SapiensTorchScriptBackbone(arch=dict(TINY_ARCH), img_size=(32, 32), lora=LORA).eval()
    back.load_state_dict(plain.state_dict())  # plain -> zero adapters, same function
    assert back.layers[1].attn.proj.lora_up.weight.abs().sum() == 0
    with torch.no_grad():
        torch.testing.assert_close(back(x)[0], want, atol=1e-5, rtol=1e-5)


def test_meta_pose_config_patch_padding_is_allowed(mae_file):
    b = _build(mae_file[0], patch_cfg=dict(padding=2))  # conv check skipped on purpose
    assert b.patch_embed.projection.padding == (2, 2)
    assert b(torch.randn(1, 3, 48, 32))[0].shape == (1, 32, 3, 2)


def test_registry_builds_it(mae_file):
    from mmpose.registry import MODELS
    b = MODELS.build(
        dict(
            type='SapiensTorchScriptBackbone',
            checkpoint=mae_file[0],
            arch=dict(TINY_ARCH),
            img_size=(32, 32),
            lora=LORA))
    b.init_weights()
    assert b(torch.randn(1, 3, 32, 32))[0].shape == (1, 32, 2, 2)


def test_bad_settings_and_inputs(mae_file):
    with pytest.raises(
            ValueError, match=r'img_size \(380, 288\).*multiples of patch_size=16'
            r'.*\(384, 288\)'):
        SapiensTorchScriptBackbone(arch=dict(TINY_ARCH), img_size=(380, 288))
    b = _build(mae_file[0])
    with pytest.raises(ValueError, match=r'input 50x32 .*patch_size=16.*\(48, 32\)'):
        b(torch.randn(1, 3, 50, 32))
    with pytest.raises(ValueError, match='trainable_layers=7'):
        b.set_trainable_layers(7)
    with pytest.raises(ValueError, match='model.backbone.lora=dict'):
        b.set_lora_trainable()
    with pytest.raises(ValueError, match='frozen_dtype'):
        SapiensTorchScriptBackbone(arch=dict(TINY_ARCH), img_size=(32, 32), frozen_dtype='int8')
    with pytest.raises(ValueError, match='needs rank'):
        SapiensTorchScriptBackbone(arch=dict(TINY_ARCH), img_size=(32, 32), lora=dict(alpha=4))

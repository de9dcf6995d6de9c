import pytest
import torch
from mmengine.optim import build_optim_wrapper
from sapiens_test_utils import TINY_ARCH

from keypose_ext.models.backbones.sapiens_torchscript_backbone import SapiensTorchScriptBackbone


class Toy(torch.nn.Module):

    def __init__(self):
        super().__init__()
        self.backbone = SapiensTorchScriptBackbone(
            arch=dict(TINY_ARCH), img_size=(32, 32), trainable_layers=0)
        self.head = torch.nn.Linear(32, 4)


CFG = dict(
    optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.1),
    constructor='SapiensLayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(layer_decay_rate=0.5))


def test_all_parameters_grouped_with_decayed_lr():
    model = Toy()
    ow = build_optim_wrapper(model, dict(CFG))
    groups = ow.optimizer.param_groups
    in_groups = {id(p) for g in groups for p in g['params']}
    assert in_groups == {id(p) for p in model.parameters()}  # frozen ones included
    lr_of = {id(p): g['lr'] for g in groups for p in g['params']}
    wd_of = {id(p): g['weight_decay'] for g in groups for p in g['params']}
    bb = model.backbone
    # depth: stem 0, block i -> i + 1, final norm/head -> num_layers + 1 (scale 1)
    assert lr_of[id(model.head.weight)] == pytest.approx(1e-3)
    assert lr_of[id(bb.layers[2].attn.qkv.weight)] == pytest.approx(1e-3 * 0.5)
    assert lr_of[id(bb.layers[0].attn.qkv.weight)] == pytest.approx(1e-3 * 0.5**3)
    assert lr_of[id(bb.pos_embed)] == pytest.approx(1e-3 * 0.5**4)
    assert wd_of[id(bb.pos_embed)] == 0 and wd_of[id(bb.layers[0].attn.qkv.bias)] == 0
    assert wd_of[id(bb.layers[0].ln1.weight)] == 0
    assert wd_of[id(bb.layers[0].attn.qkv.weight)] == pytest.approx(0.1)


def test_frozen_parameters_take_no_step_until_unfrozen():
    model = Toy()
    ow = build_optim_wrapper(model, dict(CFG))
    w0 = model.backbone.layers[2].attn.qkv.weight.detach().clone()
    out = model.head(model.backbone(torch.randn(2, 3, 32, 32))[0].mean((2, 3)))
    ow.update_params(out.square().mean())
    assert torch.equal(model.backbone.layers[2].attn.qkv.weight, w0)
    assert model.backbone.layers[2].attn.qkv.weight not in ow.optimizer.state
    model.backbone.set_trainable_layers(1)
    out = model.head(model.backbone(torch.randn(2, 3, 32, 32))[0].mean((2, 3)))
    ow.update_params(out.square().mean())
    assert not torch.equal(model.backbone.layers[2].attn.qkv.weight, w0)
    assert ow.optimizer.state[model.head.weight]['step'] == 2


def test_needs_a_vit_backbone():
    with pytest.raises(ValueError, match='get_layer_depth'):
        build_optim_wrapper(torch.nn.Linear(2, 2), dict(CFG))
    with pytest.raises(ValueError, match='layer_decay_rate=1.5'):
        build_optim_wrapper(Toy(), dict(CFG, paramwise_cfg=dict(layer_decay_rate=1.5)))


def test_lora_adapters_and_fsdp_names_get_their_block_depth():

    class FakeFSDP(torch.nn.Module):
        """Parameter names as FSDP (use_orig_params=True) reports them."""

        def __init__(self, module):
            super().__init__()
            self._fsdp_wrapped_module = module

        @property
        def module(self):
            return self._fsdp_wrapped_module

    model = Toy()
    model.backbone = SapiensTorchScriptBackbone(
        arch=dict(TINY_ARCH), img_size=(32, 32), lora=dict(rank=2))
    ow = build_optim_wrapper(FakeFSDP(model), dict(CFG))
    lr_of = {id(p): g['lr'] for g in ow.optimizer.param_groups for p in g['params']}
    qkv = model.backbone.layers[0].attn.qkv
    assert lr_of[id(qkv.lora_up.weight)] == pytest.approx(1e-3 * 0.5**3)
    assert lr_of[id(qkv.original_layer.weight)] == pytest.approx(1e-3 * 0.5**3)
    assert lr_of[id(model.head.weight)] == pytest.approx(1e-3)

import glob
import os.path as osp
from types import SimpleNamespace

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from sapiens_test_utils import ROOT, TINY_ARCH, make_tiny_trace, write_tiny_stage1_config

from keypose_ext.engine.hooks.sapiens_phase_switch_hook import SapiensPhaseSwitchHook
from keypose_ext.models.backbones.sapiens_torchscript_backbone import SapiensTorchScriptBackbone
from keypose_ext.testing.synthetic_coco import make_synthetic_coco
from keypose_ext.utils.errors import KeyposeUserError


class Generic(torch.nn.Module):

    def __init__(self):
        super().__init__()
        self.backbone = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Dropout(0.5))
        self.head = torch.nn.Linear(4, 2)


def test_generic_module_frozen_and_kept_in_eval():
    model = Generic()
    hook = SapiensPhaseSwitchHook(switch_epoch=2, frozen_modules=['backbone'])
    runner = SimpleNamespace(model=model)
    hook.apply_phase(model, hook.phase_of_epoch(0))
    assert not any(p.requires_grad for p in model.backbone.parameters())
    model.train()  # what the train loop does at each epoch start
    hook.before_train_iter(runner, 0)
    assert not model.backbone.training and model.head.training
    hook.apply_phase(model, hook.phase_of_epoch(2))
    assert all(p.requires_grad for p in model.backbone.parameters())
    assert model.backbone.training


def test_bad_arguments():
    with pytest.raises(KeyposeUserError, match="unknown keys \\['lr'\\]"):
        SapiensPhaseSwitchHook(phase2=dict(lr=1e-4))
    with pytest.raises(ValueError, match='switch_epoch=-1'):
        SapiensPhaseSwitchHook(switch_epoch=-1)
    with pytest.raises(ValueError, match="phase2.mode='dora'"):
        SapiensPhaseSwitchHook(phase2=dict(mode='dora'))
    hook = SapiensPhaseSwitchHook(frozen_modules=['neck'])
    with pytest.raises(ValueError, match="'neck' is not in the model.*'backbone', 'head'"):
        hook.apply_phase(Generic(), 1)
    # the LoRA route on a backbone built without adapters names the fix
    model = torch.nn.Module()
    model.backbone = SapiensTorchScriptBackbone(arch=dict(TINY_ARCH), img_size=(32, 32))
    with pytest.raises(KeyposeUserError, match='model.backbone.lora=dict'):
        SapiensPhaseSwitchHook(phase2=dict(mode='lora')).apply_phase(model, 2)


def test_phase2_routes_on_the_backbone():
    model = torch.nn.Module()
    model.backbone = SapiensTorchScriptBackbone(
        arch=dict(TINY_ARCH),
        img_size=(32, 32),
        lora=dict(rank=2),
        trainable_layers=0,
        frozen_dtype='float16')
    for phase2, mode, n_trainable_blocks in [(dict(mode='lora'), 'lora', 0),
                                             (dict(mode='last_blocks',
                                                   trainable_layers=2), 'last_blocks', 2),
                                             (dict(trainable_layers=1), 'last_blocks', 1),
                                             (dict(mode='full'), 'full', 3)]:
        hook = SapiensPhaseSwitchHook(switch_epoch=1, phase2=dict(phase2, with_cp=True))
        hook.apply_phase(model, 1)
        assert model.backbone.finetune_mode == 'frozen'
        hook.apply_phase(model, 2)
        bb = model.backbone
        assert bb.finetune_mode == mode and bb.with_cp
        assert sum(layer.ln1.weight.requires_grad for layer in bb.layers) == n_trainable_blocks


def test_switch_casts_optimizer_state_to_the_parameter_dtype():
    model = torch.nn.Module()
    model.backbone = SapiensTorchScriptBackbone(
        arch=dict(TINY_ARCH), img_size=(32, 32), trainable_layers=0, frozen_dtype='float16')
    model.head = torch.nn.Linear(32, 2)
    ow = build_optim_wrapper(
        model,
        dict(
            optimizer=dict(type='AdamW', lr=1e-3),
            constructor='SapiensLayerDecayOptimWrapperConstructor',
            paramwise_cfg=dict(layer_decay_rate=0.9)))
    w = model.backbone.layers[2].attn.qkv.weight
    # what Optimizer.load_state_dict leaves when a phase-2 state meets fp16 params
    ow.optimizer.state[w] = dict(
        step=torch.tensor(3.), exp_avg=torch.ones_like(w), exp_avg_sq=torch.ones_like(w))
    hook = SapiensPhaseSwitchHook(switch_epoch=1, phase2=dict(trainable_layers=1))
    hook.apply_phase(model, 2, ow)
    assert w.dtype == torch.float32 and w.requires_grad
    assert ow.optimizer.state[w]['exp_avg'].dtype == torch.float32
    assert ow.optimizer.state[w]['step'].item() == 3


# ------------------------------------------------------------- with the runner
@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """2 epochs of the tiny stage-1 config: epoch 0 frozen, epoch 1 trains the LoRA
    adapters of every block (switch_epoch=1), fp16 frozen storage as in stage1_gtx1650."""
    from keypose_ext.utils.cli import build_runner
    tmp = tmp_path_factory.mktemp('phase')
    ckpt, _ = make_tiny_trace(tmp / 'tiny.pt2')
    make_synthetic_coco(str(tmp / 'coco'))
    cfg_path = write_tiny_stage1_config(tmp, ckpt, tmp / 'coco', switch_epoch=1, max_epochs=2)
    cfg = Config.fromfile(cfg_path)
    cfg.work_dir = str(tmp / 'work')
    runner = build_runner(cfg)
    file_model = SapiensTorchScriptBackbone(
        checkpoint=ckpt,
        arch=dict(TINY_ARCH),
        img_size=(64, 48),
        frozen_dtype='float16',
        trainable_layers=0,
        lora=dict(rank=8, alpha=16))
    file_model.init_weights()
    runner.train()
    return SimpleNamespace(runner=runner, cfg_path=cfg_path, tmp=tmp, file=file_model)


def _hook(runner):
    return next(h for h in runner.hooks if isinstance(h, SapiensPhaseSwitchHook))


def test_training_switches_phase_and_keeps_optimizer(trained):
    runner = trained.runner
    bb = runner.model.backbone
    assert _hook(runner).phase == 2 and bb.finetune_mode == 'lora'
    up = bb.layers[0].attn.qkv.lora_up.weight
    base = bb.layers[0].attn.qkv.original_layer.weight
    assert up.dtype == torch.float32 and base.dtype == torch.float16
    # base weights never moved; every block's adapters and the head did
    assert torch.equal(base, trained.file.layers[0].attn.qkv.original_layer.weight)
    assert all(layer.ffn.layers[1].lora_up.weight.abs().sum() > 0 for layer in bb.layers)
    state = runner.optim_wrapper.optimizer.state
    head_steps = state[runner.model.head.final_layer.weight]['step'].item()
    adapter_steps = state[up]['step'].item()
    assert head_steps == 2 * adapter_steps > 0  # head: both epochs, adapters: phase 2 only
    assert base not in state
    assert osp.isfile(osp.join(runner.work_dir, 'epoch_2.pth'))
    assert glob.glob(osp.join(runner.work_dir, 'best_coco_AP_epoch_*.pth'))


def test_resume_loads_phase2_weights_and_state_in_fp32(trained):
    from keypose_ext.utils.cli import build_runner
    cfg = Config.fromfile(trained.cfg_path)
    cfg.work_dir = str(trained.tmp / 'work_check')
    runner = build_runner(cfg)
    runner.optim_wrapper = runner.build_optim_wrapper(runner.optim_wrapper)
    runner.param_schedulers = runner.build_param_scheduler(runner.param_schedulers)
    ckpt_path = osp.join(trained.runner.work_dir, 'epoch_2.pth')
    runner.resume(ckpt_path)
    ckpt = torch.load(ckpt_path, map_location='cpu', weights_only=False)
    bb = runner.model.backbone
    assert _hook(runner).phase == 2 and bb.finetune_mode == 'lora'
    w = bb.layers[2].attn.qkv.lora_up.weight
    assert w.dtype == torch.float32
    assert torch.equal(w, ckpt['state_dict']['backbone.layers.2.attn.qkv.lora_up.weight'])
    st = runner.optim_wrapper.optimizer.state[w]
    assert st['exp_avg'].dtype == torch.float32
    saved = trained.runner.optim_wrapper.optimizer.state[
        trained.runner.model.backbone.layers[2].attn.qkv.lora_up.weight]
    torch.testing.assert_close(st['exp_avg_sq'], saved['exp_avg_sq'])


def test_resumed_run_continues_after_the_switch(trained):
    from keypose_ext.utils.cli import build_runner
    cfg = Config.fromfile(trained.cfg_path)
    cfg.work_dir = str(trained.tmp / 'work_resume')
    cfg.train_cfg.max_epochs = 3
    cfg.resume = True
    cfg.load_from = osp.join(trained.runner.work_dir, 'epoch_2.pth')
    runner = build_runner(cfg)
    runner.train()
    state = runner.optim_wrapper.optimizer.state
    before = trained.runner.optim_wrapper.optimizer.state
    head_w = runner.model.head.final_layer.weight
    head_steps_2 = before[trained.runner.model.head.final_layer.weight]['step'].item()
    # one more epoch of the same length: 3/2 of the steps after 2 epochs
    assert state[head_w]['step'].item() == pytest.approx(1.5 * head_steps_2)
    w = runner.model.backbone.layers[2].attn.qkv.lora_up.weight
    assert state[w]['step'].item() == pytest.approx(head_steps_2)
    assert runner.model.backbone.layers[0].attn.qkv.original_layer.weight.dtype == \
        torch.float16
    assert osp.isfile(osp.join(runner.work_dir, 'epoch_3.pth'))


def test_memory_warning_names_value_and_fix(monkeypatch):
    """On a GPU too small for the config, before_train warns with what fits."""
    from keypose_ext.engine.hooks import sapiens_phase_switch_hook as mod
    msgs = []
    monkeypatch.setattr(mod, 'print_log', lambda msg, **kw: msgs.append(msg))
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'current_device', lambda: 0)
    monkeypatch.setattr(torch.cuda, 'get_device_name', lambda d=0: 'GeForce GTX 1650')
    monkeypatch.setattr(
        torch.cuda, 'get_device_properties', lambda d=0: SimpleNamespace(total_memory=4 * 1024**3))
    # the estimate reads the run's config: no 1.1 B-parameter model is built
    cfg = Config.fromfile(osp.join(ROOT, 'configs', 'sapiens', 'stage1_gtx1650.py'))
    SapiensPhaseSwitchHook()._check_memory(SimpleNamespace(cfg=cfg))
    assert not msgs  # the shipped 4 GB setting fits
    cfg.custom_hooks[0].phase2 = dict(mode='full')
    SapiensPhaseSwitchHook(phase2=dict(mode='full'))._check_memory(SimpleNamespace(cfg=cfg))
    assert len(msgs) == 1
    assert "phase 2 (route 'full', batch_size=2, input 384x288)" in msgs[0]
    assert 'GTX 1650' in msgs[0] and "route 'lora' at batch" in msgs[0]

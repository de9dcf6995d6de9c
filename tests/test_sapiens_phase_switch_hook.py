import glob
import os.path as osp
from types import SimpleNamespace

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from sapiens_test_utils import TINY_ARCH, make_tiny_trace, write_tiny_stage1_config

from keypose_ext.testing.synthetic_coco import make_synthetic_coco
from keypose_ext.engine.hooks.sapiens_phase_switch_hook import SapiensPhaseSwitchHook
from keypose_ext.models.backbones.sapiens_torchscript_backbone import \
    SapiensTorchScriptBackbone


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
    with pytest.raises(ValueError, match="unknown keys \\['lr'\\]"):
        SapiensPhaseSwitchHook(phase2=dict(lr=1e-4))
    with pytest.raises(ValueError, match='switch_epoch=-1'):
        SapiensPhaseSwitchHook(switch_epoch=-1)
    hook = SapiensPhaseSwitchHook(frozen_modules=['neck'])
    with pytest.raises(ValueError, match="'neck' is not in the model.*'backbone', 'head'"):
        hook.apply_phase(Generic(), 1)


def test_switch_casts_optimizer_state_to_the_parameter_dtype():
    model = torch.nn.Module()
    model.backbone = SapiensTorchScriptBackbone(arch=dict(TINY_ARCH), img_size=(32, 32),
                                                trainable_layers=0, frozen_dtype='float16')
    model.head = torch.nn.Linear(32, 2)
    ow = build_optim_wrapper(model, dict(
        optimizer=dict(type='AdamW', lr=1e-3),
        constructor='SapiensLayerDecayOptimWrapperConstructor',
        paramwise_cfg=dict(layer_decay_rate=0.9)))
    w = model.backbone.layers[2].attn.qkv.weight
    # what Optimizer.load_state_dict leaves when a phase-2 state meets fp16 params
    ow.optimizer.state[w] = dict(step=torch.tensor(3.), exp_avg=torch.ones_like(w),
                                 exp_avg_sq=torch.ones_like(w))
    hook = SapiensPhaseSwitchHook(switch_epoch=1, phase2=dict(trainable_layers=1))
    hook.apply_phase(model, 2, ow)
    assert w.dtype == torch.float32 and w.requires_grad
    assert ow.optimizer.state[w]['exp_avg'].dtype == torch.float32
    assert ow.optimizer.state[w]['step'].item() == 3


# ------------------------------------------------------------- with the runner
@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """2 epochs of the tiny stage-1 config: epoch 0 frozen, epoch 1 fine-tunes the
    last block (switch_epoch=1), fp16 frozen storage as in stage1_gtx1650."""
    from mmengine.runner import Runner
    tmp = tmp_path_factory.mktemp('phase')
    ckpt, _ = make_tiny_trace(tmp / 'tiny.pt2')
    make_synthetic_coco(str(tmp / 'coco'))
    cfg_path = write_tiny_stage1_config(tmp, ckpt, tmp / 'coco', switch_epoch=1,
                                        max_epochs=2)
    cfg = Config.fromfile(cfg_path)
    cfg.work_dir = str(tmp / 'work')
    runner = Runner.from_cfg(cfg)
    file_model = SapiensTorchScriptBackbone(checkpoint=ckpt, arch=dict(TINY_ARCH),
                                            img_size=(64, 48), frozen_dtype='float16',
                                            trainable_layers=0)
    file_model.init_weights()
    runner.train()
    return SimpleNamespace(runner=runner, cfg_path=cfg_path, tmp=tmp, file=file_model)


def _hook(runner):
    return next(h for h in runner.hooks if isinstance(h, SapiensPhaseSwitchHook))


def test_training_switches_phase_and_keeps_optimizer(trained):
    runner = trained.runner
    bb = runner.model.backbone
    assert _hook(runner).phase == 2
    assert bb.trainable_layers == 1
    assert bb.layers[2].attn.qkv.weight.dtype == torch.float32
    assert bb.layers[0].attn.qkv.weight.dtype == torch.float16
    # frozen blocks never moved; the unfrozen one and the head did
    assert torch.equal(bb.layers[0].attn.qkv.weight, trained.file.layers[0].attn.qkv.weight)
    assert not torch.allclose(bb.layers[2].attn.qkv.weight.float(),
                              trained.file.layers[2].attn.qkv.weight.float())
    state = runner.optim_wrapper.optimizer.state
    head_steps = state[runner.model.head.final_layer.weight]['step'].item()
    block_steps = state[bb.layers[2].attn.qkv.weight]['step'].item()
    assert head_steps == 2 * block_steps > 0  # head: both epochs, block: phase 2 only
    assert bb.layers[1].attn.qkv.weight not in state
    assert osp.isfile(osp.join(runner.work_dir, 'epoch_2.pth'))
    assert glob.glob(osp.join(runner.work_dir, 'best_coco_AP_epoch_*.pth'))


def test_resume_loads_phase2_weights_and_state_in_fp32(trained):
    from mmengine.runner import Runner
    cfg = Config.fromfile(trained.cfg_path)
    cfg.work_dir = str(trained.tmp / 'work_check')
    runner = Runner.from_cfg(cfg)
    runner.optim_wrapper = runner.build_optim_wrapper(runner.optim_wrapper)
    runner.param_schedulers = runner.build_param_scheduler(runner.param_schedulers)
    ckpt_path = osp.join(trained.runner.work_dir, 'epoch_2.pth')
    runner.resume(ckpt_path)
    ckpt = torch.load(ckpt_path, map_location='cpu', weights_only=False)
    bb = runner.model.backbone
    assert _hook(runner).phase == 2 and bb.trainable_layers == 1
    w = bb.layers[2].attn.qkv.weight
    assert w.dtype == torch.float32
    assert torch.equal(w, ckpt['state_dict']['backbone.layers.2.attn.qkv.weight'])
    st = runner.optim_wrapper.optimizer.state[w]
    assert st['exp_avg'].dtype == torch.float32
    saved = trained.runner.optim_wrapper.optimizer.state[
        trained.runner.model.backbone.layers[2].attn.qkv.weight]
    torch.testing.assert_close(st['exp_avg_sq'], saved['exp_avg_sq'])


def test_resumed_run_continues_after_the_switch(trained):
    from mmengine.runner import Runner
    cfg = Config.fromfile(trained.cfg_path)
    cfg.work_dir = str(trained.tmp / 'work_resume')
    cfg.train_cfg.max_epochs = 3
    cfg.resume = True
    cfg.load_from = osp.join(trained.runner.work_dir, 'epoch_2.pth')
    runner = Runner.from_cfg(cfg)
    runner.train()
    state = runner.optim_wrapper.optimizer.state
    before = trained.runner.optim_wrapper.optimizer.state
    head_w = runner.model.head.final_layer.weight
    head_steps_2 = before[trained.runner.model.head.final_layer.weight]['step'].item()
    # one more epoch of the same length: 3/2 of the steps after 2 epochs
    assert state[head_w]['step'].item() == pytest.approx(1.5 * head_steps_2)
    w = runner.model.backbone.layers[2].attn.qkv.weight
    assert state[w]['step'].item() == pytest.approx(head_steps_2)
    assert runner.model.backbone.layers[0].attn.qkv.weight.dtype == torch.float16
    assert osp.isfile(osp.join(runner.work_dir, 'epoch_3.pth'))


def test_memory_warning_names_value_and_fix(monkeypatch):
    """On a GPU too small for the settings, before_train warns with the fix."""
    from keypose_ext.engine.hooks import sapiens_phase_switch_hook as mod
    from keypose_ext.models.backbones.sapiens_torchscript_backbone import SAPIENS_ARCHS
    msgs = []
    monkeypatch.setattr(mod, 'print_log', lambda msg, **kw: msgs.append(msg))
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'current_device', lambda: 0)
    monkeypatch.setattr(torch.cuda, 'get_device_name', lambda d=0: 'GeForce GTX 1650')
    monkeypatch.setattr(torch.cuda, 'get_device_properties',
                        lambda d=0: SimpleNamespace(total_memory=4 * 1024**3))
    # a Sapiens-1B description without allocating 1.1 B parameters
    backbone = SimpleNamespace(set_trainable_layers=lambda *a, **k: None,
                               arch_settings=SAPIENS_ARCHS['sapiens_1b'], patch_size=16,
                               patch_resolution=(24, 18), frozen_dtype=torch.float16,
                               with_cp=True)
    runner = SimpleNamespace(model=SimpleNamespace(backbone=backbone),
                             train_dataloader=SimpleNamespace(batch_size=2),
                             optim_wrapper=SimpleNamespace(_accumulative_counts=16))
    SapiensPhaseSwitchHook(phase2=dict(trainable_layers=2, with_cp=True))._check_memory(
        runner)
    assert not msgs  # the shipped 4 GB setting fits
    SapiensPhaseSwitchHook(phase2=dict(trainable_layers=-1))._check_memory(runner)
    assert len(msgs) == 1
    assert 'phase 2 (batch_size=2, input 384x288, trainable_layers=-1' in msgs[0]
    assert 'GTX 1650' in msgs[0] and 'custom_hooks.0.phase2.trainable_layers=' in msgs[0]

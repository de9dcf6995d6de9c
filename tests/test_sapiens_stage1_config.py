import glob
import os
import os.path as osp
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config
from sapiens_test_utils import ROOT, make_tiny_trace, write_tiny_stage1_config

from keypose_ext.testing.synthetic_coco import make_synthetic_coco
from keypose_ext.utils.sapiens_archs import SAPIENS_ARCHS

CFG_DIR = osp.join(ROOT, 'configs', 'sapiens')
VARIANTS = ('stage1_gtx1650.py', 'td-hm_sapiens-1b_1xb1-110e_coco-320x240.py',
            'td-hm_sapiens-1b_1xb32-110e_coco-512x384.py',
            'td-hm_sapiens-1b-last2_1xb2-110e_coco-384x288.py',
            'td-hm_sapiens-1b-fsdp-offload_1xb2-100e_coco-384x288.py')


def _load(name):
    return Config.fromfile(osp.join(CFG_DIR, name))


def test_gtx1650_config_has_the_seed_settings():
    cfg = _load('stage1_gtx1650.py')
    bb, head = cfg.model.backbone, cfg.model.head
    assert bb.type == 'SapiensTorchScriptBackbone' and bb.arch == 'sapiens_1b'
    assert bb.checkpoint.endswith('sapiens_1b_epoch_173_torchscript.pt2')
    assert tuple(bb.img_size) == (384, 288)
    assert tuple(head.decoder.input_size) == (288, 384)  # codec sizes are (W, H)
    assert tuple(head.decoder.heatmap_size) == (72, 96)
    assert head.decoder.type == 'UDPHeatmap' and head.type == 'HeatmapHead'
    assert head.in_channels == SAPIENS_ARCHS['sapiens_1b']['embed_dims']
    assert cfg.train_dataloader.batch_size == 2 and cfg.train_dataloader.num_workers == 2
    assert 'Amp' in cfg.optim_wrapper.type and cfg.optim_wrapper.accumulative_counts == 16
    assert cfg.optim_wrapper.optimizer.lr == 5e-4
    hook, merge = cfg.custom_hooks
    assert hook.type == 'SapiensPhaseSwitchHook' and hook.switch_epoch == 10
    assert hook.phase2.mode == 'lora' and bb.lora.rank == 8  # the 4 GB route
    assert merge.type == 'SapiensLoRAMergeHook'
    assert bb.trainable_layers == 0 and bb.frozen_dtype == 'float16'  # built in phase 1
    assert cfg.train_cfg.max_epochs == 110
    warmup, cosine = cfg.param_scheduler
    assert warmup.type == 'LinearLR' and warmup.end <= 10
    assert cosine.type == 'CosineAnnealingLR' and (cosine.begin, cosine.end) == (10, 110)
    ck = cfg.default_hooks.checkpoint
    assert ck.interval == 5 and ck.save_best == 'coco/AP' and ck.save_last
    assert {b.type for b in cfg.visualizer.vis_backends} >= {'TensorboardVisBackend'}
    assert cfg.val_evaluator.type == 'CocoMetric'
    assert cfg.train_dataloader.dataset.ann_file.endswith('person_keypoints_train2017.json')
    assert cfg.train_dataloader.dataset.data_prefix.img == 'images/train2017/'
    types = [t.type for t in cfg.train_dataloader.dataset.pipeline]
    # Meta's augmentation after the affine crop, before the targets
    assert types.index('TopdownAffine') < types.index('PhotometricDistortion') < \
        types.index('Albumentation') < types.index('GenerateTarget')


@pytest.mark.parametrize('name', VARIANTS)
def test_sizes_come_from_the_codec(name):
    cfg = _load(name)
    w, h = cfg.model.head.decoder.input_size
    assert tuple(cfg.model.backbone.img_size) == (h, w)
    assert tuple(cfg.model.head.decoder.heatmap_size) == (w // 4, h // 4)
    for loader in (cfg.train_dataloader, cfg.val_dataloader):
        assert all(
            tuple(t.input_size) == (w, h) for t in loader.dataset.pipeline
            if t.type == 'TopdownAffine')
    assert cfg.optim_wrapper.optimizer.lr == 5e-4


def test_variants_change_only_their_settings():
    a100, minimal = _load('td-hm_sapiens-1b_1xb32-110e_coco-512x384.py'), _load(
        'td-hm_sapiens-1b_1xb1-110e_coco-320x240.py')
    assert tuple(a100.model.backbone.img_size) == (512, 384)
    assert a100.train_dataloader.batch_size == 32 and a100.optim_wrapper.accumulative_counts == 1
    assert a100.custom_hooks[0].phase2.mode == 'full' and a100.model.backbone.lora is None
    assert tuple(minimal.model.backbone.img_size) == (320, 240)
    assert minimal.train_dataloader.batch_size == 1
    assert minimal.optim_wrapper.accumulative_counts == 32
    last2 = _load('td-hm_sapiens-1b-last2_1xb2-110e_coco-384x288.py')
    assert last2.custom_hooks[0].phase2 == dict(
        mode='last_blocks', trainable_layers=2, with_cp=True)
    assert last2.model.backbone.lora is None
    off = _load('td-hm_sapiens-1b-fsdp-offload_1xb2-100e_coco-384x288.py')
    assert off.runner_type == 'FlexibleRunner' and off.strategy.type == 'FSDPStrategy'
    assert off.strategy.model_wrapper.cpu_offload is True
    assert off.custom_hooks[0].switch_epoch == 0 and off.model.backbone.frozen_dtype is None
    assert off.model.backbone.checkpoint is None and off.optim_wrapper.use_fsdp


def test_meta_augmentation_runs_on_a_coco_sample(tmp_path):
    pytest.importorskip('albumentations')
    from mmengine.dataset import Compose
    from mmengine.registry import init_default_scope
    from mmpose.registry import DATASETS

    import keypose_ext  # noqa: F401
    init_default_scope('mmpose')
    make_synthetic_coco(str(tmp_path), dict(train=2), image_size=(320, 240))
    cfg = _load('stage1_gtx1650.py')
    ds = cfg.train_dataloader.dataset
    pipeline = Compose(ds.pipeline)
    dataset = DATASETS.build(dict(ds, data_root=str(tmp_path), pipeline=[]))
    np.random.seed(0)
    out = pipeline(dataset[0])
    assert tuple(out['inputs'].shape) == (3, 384, 288)
    assert out['data_samples'].gt_fields.heatmaps.shape == (17, 96, 72)
    # one coarse-dropout hole of 20-40 % of each side: a block of exact zeros
    zero = (out['inputs'] == 0).all(0).numpy()
    assert 0.04 * 384 * 288 <= zero.sum() <= 0.2 * 384 * 288


def _predict(model, img):
    from mmpose.apis import inference_topdown
    return inference_topdown(model, img, bboxes=np.array([[5, 5, 150, 110]]))[0] \
        .pred_instances.keypoints


@pytest.mark.slow
def test_tiny_training_then_merged_checkpoint_in_tools_test_and_init_model(tmp_path):
    from mmpose.apis import init_model

    from keypose_ext.utils.cli import build_runner
    from keypose_ext.utils.safe_checkpoint_globals import mmengine_checkpoint_globals
    ckpt, _ = make_tiny_trace(tmp_path / 'tiny.pt2')
    make_synthetic_coco(str(tmp_path / 'coco'))
    cfg_path = write_tiny_stage1_config(
        tmp_path, ckpt, tmp_path / 'coco', switch_epoch=1, max_epochs=2)
    cfg = Config.fromfile(cfg_path)
    cfg.work_dir = str(tmp_path / 'work')
    runner = build_runner(cfg)
    runner.train()
    logs = runner.message_hub.log_scalars
    assert np.isfinite(logs['train/loss'].current()) and 'val/coco/AP' in logs
    lora_ckpt = osp.join(cfg.work_dir, 'epoch_2.pth')
    merged = osp.join(cfg.work_dir, 'epoch_2_merged.pth')
    assert osp.isfile(merged) and not osp.isfile(osp.join(cfg.work_dir, 'epoch_1_merged.pth'))
    sd = torch.load(merged, map_location='cpu', weights_only=False)['state_dict']
    assert 'backbone.layers.0.attn.qkv.weight' in sd and not any('lora' in k for k in sd)
    # init_model: the LoRA checkpoint with the training config == the merged one in a
    # plain model (no adapters, fp32), which loads without allow-lists
    img = cv2.imread(glob.glob(str(tmp_path / 'coco' / 'images' / 'val2017' / '*.jpg'))[0])
    with mmengine_checkpoint_globals():  # a training checkpoint pickles numpy values
        with_adapters = init_model(
            cfg_path, lora_ckpt, device='cpu',
            cfg_options={'model.backbone.frozen_dtype':
                         None})  # the same arithmetic as the plain one
    plain = init_model(
        cfg_path,
        merged,
        device='cpu',
        cfg_options={
            'model.backbone.lora': None,
            'model.backbone.frozen_dtype': None,
            'model.backbone.checkpoint': None
        })
    assert not any('lora' in k for k in plain.state_dict())
    np.testing.assert_allclose(_predict(plain, img), _predict(with_adapters, img), atol=0.01)
    env = dict(os.environ, PYTHONWARNINGS='ignore')
    cmd = [
        sys.executable,
        osp.join(ROOT, 'tools', 'test.py'), cfg_path, merged, '--work-dir',
        str(tmp_path / 'test'), '--show-dir', 'vis'
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert 'coco/AP' in res.stdout + res.stderr
    drawn = glob.glob(str(tmp_path / 'test' / '**' / 'vis' / '*.jpg'), recursive=True)
    assert drawn, 'no visualisations written'
    stem = osp.basename(drawn[0]).rsplit('_', 1)[0]  # mmpose: <image stem>_<index>.jpg
    src = cv2.imread(str(tmp_path / 'coco' / 'images' / 'val2017' / f'{stem}.jpg'))
    out = cv2.imread(drawn[0])
    assert out is not None and out.shape[:2] == src.shape[:2]
    assert np.abs(out.astype(int) - src.astype(int)).mean() > 1  # skeleton drawn on it
    # the full-offload route's second run starts from the merged phase-1 weights (the
    # KeyposeRunner loads load_from strictly); on a CPU without FSDP, which needs a GPU
    full = _full_offload_config(tmp_path / 'full')
    full.runner_type = 'KeyposeRunner'
    full.pop('strategy')
    full.load_from = merged
    runner = build_runner(full)
    runner.train()
    bb = runner.model.backbone
    assert bb.finetune_mode == 'full' and all(p.requires_grad for p in bb.parameters())
    assert not torch.equal(bb.patch_embed.projection.weight.float(),
                           sd['backbone.patch_embed.projection.weight'].float())


def _full_offload_config(tmp_path, extra=''):
    make_synthetic_coco(str(tmp_path / 'coco'))
    path = write_tiny_stage1_config(
        tmp_path,
        None,
        tmp_path / 'coco',
        switch_epoch=0,
        max_epochs=1,
        phase2=dict(mode='full', with_cp=True),
        base='td-hm_sapiens-1b-fsdp-offload_1xb2-100e_coco-384x288.py',
        extra=extra)
    cfg = Config.fromfile(path)
    cfg.work_dir = str(tmp_path / 'work')
    return cfg


def test_full_offload_config_builds_mmengine_flexible_runner(tmp_path):
    from keypose_ext.utils.cli import build_runner
    cfg = _full_offload_config(tmp_path)
    if not torch.cuda.is_available():  # without it: one clear line (test_bad_inputs.py)
        cfg.strategy.model_wrapper.device_id = torch.device('cpu')
    runner = build_runner(cfg)
    assert type(runner).__name__ == 'FlexibleRunner'
    assert type(runner.strategy).__name__ == 'FSDPStrategy'


def _single_process_env(monkeypatch):
    import socket
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    for k, v in dict(
            MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port), RANK='0', WORLD_SIZE='1',
            LOCAL_RANK='0').items():
        monkeypatch.setenv(k, v)


def test_full_route_trains_every_parameter_with_fsdp_on_the_cpu(tmp_path, monkeypatch):
    """Route b at tiny size on the CPU: MMEngine's FlexibleRunner + FSDPStrategy + PyTorch
    FSDP (one FSDP unit per block) train every parameter of the backbone, and the
    checkpoint is a plain full state dict that init_model loads with the stage-1 config.
    Only what needs a GPU is changed: gloo is set up here (MMEngine's launcher calls
    torch.cuda.set_device), FSDP computes on the CPU, nothing is pinned for offload (the
    parameters already live in host memory) and it trains in float32 (no autocast)."""
    from mmpose.apis import init_model

    from keypose_ext.utils.cli import build_runner
    _single_process_env(monkeypatch)
    cfg = _full_offload_config(
        tmp_path,
        extra=("launcher = 'pytorch'\n"
               'strategy = dict(model_wrapper=dict(cpu_offload=False, mixed_precision=None,'
               ' auto_wrap_policy=dict(min_num_params=2000)))\n'
               'optim_wrapper = dict(optimizer=dict(lr=1e-2))'))
    cfg.strategy.model_wrapper.device_id = torch.device('cpu')
    # the run starts from known plain weights, as the documented one does (load_from =
    # the phase-1 run's merged checkpoint)
    from mmengine.registry import init_default_scope
    from mmpose.registry import MODELS
    init_default_scope('mmpose')
    before = MODELS.build(cfg.model).state_dict()
    cfg.load_from = str(tmp_path / 'start.pth')
    torch.save(dict(state_dict=before, meta=dict()), cfg.load_from)
    torch.distributed.init_process_group('gloo', rank=0, world_size=1)
    try:
        runner = build_runner(cfg)
        runner.train()
        wrapper = runner.model
        assert type(wrapper).__name__ == 'MMFullyShardedDataParallel'
        units = [
            m for m in wrapper.modules() if type(m).__name__.endswith('FullyShardedDataParallel')
        ]
        assert len(units) > cfg.model.backbone.arch.num_layers  # the blocks are FSDP units
        assert np.isfinite(runner.message_hub.log_scalars['train/loss'].current())
    finally:
        torch.distributed.destroy_process_group()
    ckpt = osp.join(cfg.work_dir, 'epoch_1.pth')
    sd = torch.load(ckpt, map_location='cpu', weights_only=False)['state_dict']
    backbone = [k for k in before if k.startswith('backbone.')]
    assert set(backbone) <= set(sd)  # plain names, no FSDP prefixes
    frozen = [k for k in backbone if torch.equal(sd[k].float(), before[k].float())]
    assert not frozen, f'not trained: {frozen}'
    from keypose_ext.utils.safe_checkpoint_globals import mmengine_checkpoint_globals
    with mmengine_checkpoint_globals():  # a training checkpoint pickles numpy values
        model = init_model(  # the stage-1 config, as tools/test.py builds it
            str(tmp_path / 'tiny_stage1.py'),
            ckpt,
            device='cpu',
            cfg_options={'model.backbone.frozen_dtype': None})
    loaded = model.state_dict()
    for k in backbone:
        torch.testing.assert_close(loaded[k].float(), sd[k].float())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason='PyTorch FSDP needs a GPU')
def test_full_offload_trains_every_parameter_with_fsdp_cpu_offload(tmp_path, monkeypatch):
    from keypose_ext.utils.cli import build_runner
    _single_process_env(monkeypatch)
    cfg = _full_offload_config(
        tmp_path,
        extra=("launcher = 'pytorch'\n"
               'strategy = dict(model_wrapper=dict(auto_wrap_policy=dict(min_num_params=2000)))'))
    try:
        runner = build_runner(cfg)
        runner.train()
        params = list(runner.model.parameters())
        assert all(p.device.type == 'cpu' for p in params)  # master weights offloaded
        assert np.isfinite(runner.message_hub.log_scalars['train/loss'].current())
        sd = torch.load(
            osp.join(cfg.work_dir, 'epoch_1.pth'), map_location='cpu',
            weights_only=False)['state_dict']
        assert 'backbone.layers.0.attn.qkv.weight' in sd  # a plain full state dict
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()

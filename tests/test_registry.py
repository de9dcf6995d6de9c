"""`import keypose_ext` registers every component into mmpose's registries, and each
one builds from a config dict through those registries (default scope 'mmpose')."""
import types

import pytest
import torch
from cape_fixtures import dataset_cfg as cape_dataset_cfg
from cape_fixtures import make_data as make_cape_data
from cape_fixtures import tiny_model_cfg as cape_model_cfg
from mmengine.hooks import Hook
from mmengine.optim import OptimWrapper
from mmpose import registry as R
from sapiens_test_utils import TINY_ARCH, make_tiny_trace

import keypose_ext  # noqa: F401
from keypose_ext.testing.synthetic_bottle import make_bottle_dataset
from keypose_ext.testing.synthetic_coco import make_synthetic_coco

REGISTRIES = ('DATASETS', 'DATA_SAMPLERS', 'TRANSFORMS', 'MODELS', 'KEYPOINT_CODECS', 'METRICS',
              'HOOKS', 'VISUALIZERS', 'OPTIM_WRAPPERS', 'OPTIM_WRAPPER_CONSTRUCTORS',
              'PARAM_SCHEDULERS', 'LOOPS', 'RUNNERS')


def keypose_types():
    """{(registry name, type name)} of everything keypose_ext registered."""
    found = set()
    for reg_name in REGISTRIES:
        reg = getattr(R, reg_name)
        for name, cls in reg._module_dict.items():
            if cls.__module__.startswith('keypose_ext.'):
                found.add((reg_name, name))
    return found


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp('registry')
    make_bottle_dataset(str(root / 'bottle'), num_frames=4, size=(64, 48))
    make_cape_data(root / 'mp100', images_per_category=3, keypoint_counts=(3, 5, 8))
    make_synthetic_coco(str(root / 'coco'), num_images=dict(train=2, val=2))
    trace, _ = make_tiny_trace(root / 'tiny_sapiens.pt2')
    return dict(root=root, trace=trace)


def _bottle(d):
    return dict(
        type='BottleVideoDataset',
        data_root=str(d['root'] / 'bottle'),
        ann_file='annotations.json',
        pipeline=[])


def _sapiens_model(d):
    return dict(
        type='TopdownPoseEstimator',
        backbone=dict(
            type='SapiensTorchScriptBackbone',
            checkpoint=d['trace'],
            arch=dict(TINY_ARCH),
            img_size=(64, 48)),
        head=dict(type='HeatmapHead', in_channels=32, out_channels=17, deconv_out_channels=None))


# type name -> (registry, function(data) -> config)
CASES = {
    'BottleVideoDataset': ('DATASETS', _bottle),
    'MP100EpisodicDataset':
    ('DATASETS', lambda d: cape_dataset_cfg(d['root'] / 'mp100', episodes_per_epoch=2)),
    'MP100InstanceDataset': ('DATASETS', lambda d: dict(
        type='MP100InstanceDataset',
        data_root=str(d['root'] / 'mp100'),
        ann_file='annotations/mp100_split1_train.json',
        pipeline=[])),
    'CheckedCocoDataset': ('DATASETS', lambda d: dict(
        type='CheckedCocoDataset',
        data_root=str(d['root'] / 'coco'),
        data_mode='topdown',
        ann_file='annotations/person_keypoints_val2017.json',
        data_prefix=dict(img='images/val2017/'),
        pipeline=[],
        test_mode=True)),
    'EpisodicSampler': ('DATA_SAMPLERS', lambda d: dict(
        type='EpisodicSampler',
        dataset=R.DATASETS.build(cape_dataset_cfg(d['root'] / 'mp100', episodes_per_epoch=2)),
        shuffle=True,
        seed=0)),
    'PackDepthPoseInputs': ('TRANSFORMS', lambda d: dict(type='PackDepthPoseInputs')),
    'PackCapeInputs': ('TRANSFORMS', lambda d: dict(type='PackCapeInputs')),
    'CapeSequenceCodec':
    ('KEYPOINT_CODECS', lambda d: dict(type='CapeSequenceCodec', input_size=(64, 64))),
    'DepthKeypointCodec':
    ('KEYPOINT_CODECS',
     lambda d: dict(type='DepthKeypointCodec', input_size=(224, 224), depth_scale=2.0)),
    'DepthKeypointRegressionHead': ('MODELS', lambda d: dict(
        type='DepthKeypointRegressionHead',
        in_channels=512,
        num_joints=9,
        loss=dict(type='MSELoss', use_target_weight=True),
        decoder=dict(type='DepthKeypointCodec', input_size=(224, 224)))),
    'SapiensTorchScriptBackbone': ('MODELS', lambda d: _sapiens_model(d)['backbone']),
    'CapeEstimator': ('MODELS', lambda d: cape_model_cfg()),
    'CapeSequenceHead': ('MODELS', lambda d: cape_model_cfg()['head']),
    'CapeDataPreprocessor': ('MODELS', lambda d: cape_model_cfg()['data_preprocessor']),
    'DepthKeypointMetric': ('METRICS', lambda d: dict(type='DepthKeypointMetric')),
    'ObjectronMultiVideoDataset': ('DATASETS', lambda d: dict(
        type='ObjectronMultiVideoDataset',
        data_root=str(d['root'] / 'objectron'),
        lazy_init=True,
        pipeline=[])),
    'RandomBoxFlip': ('TRANSFORMS', lambda d: dict(type='RandomBoxFlip', prob=0.5)),
    'ObjectronBoxMetric': ('METRICS', lambda d: dict(type='ObjectronBoxMetric')),
    'EpisodicPCKMetric': ('METRICS', lambda d: dict(type='EpisodicPCKMetric')),
    'DeviceResidentTrainLoop': ('LOOPS', lambda d: dict(
        type='DeviceResidentTrainLoop',
        max_epochs=1,
        dataloader=torch.utils.data.DataLoader(R.DATASETS.build(_bottle(d))),
        runner=types.SimpleNamespace(visualizer=Hook()))),
    'KeyposeEpochBasedTrainLoop': ('LOOPS', lambda d: dict(
        type='KeyposeEpochBasedTrainLoop',
        max_epochs=1,
        dataloader=torch.utils.data.DataLoader(R.DATASETS.build(_bottle(d))),
        runner=types.SimpleNamespace(visualizer=Hook()))),
    'KeyposeRunner': ('RUNNERS', lambda d: dict(
        runner_type='KeyposeRunner',
        model=torch.nn.Linear(2, 2),
        work_dir=str(d['root'] / 'run'),
        experiment_name='registry_runner',
        log_level='WARNING',
        default_scope='mmpose')),
    'KeyposeCheckpointHook': ('HOOKS', lambda d: dict(
        type='KeyposeCheckpointHook',
        interval=1,
        max_keep_ckpts=1,
        save_best='bottle/PCK',
        rule='greater')),
    'NonFiniteLossHook': ('HOOKS', lambda d: dict(type='NonFiniteLossHook', action='skip')),
    'SapiensLoRAMergeHook': ('HOOKS', lambda d: dict(type='SapiensLoRAMergeHook')),
    'SapiensPhaseSwitchHook': ('HOOKS', lambda d: dict(
        type='SapiensPhaseSwitchHook', switch_epoch=10, phase2=dict(trainable_layers=2))),
    'BottleBoxVisualizer':
    ('VISUALIZERS', lambda d: dict(type='BottleBoxVisualizer', name='registry_bottle')),
    'CapeVisualizer': ('VISUALIZERS', lambda d: dict(type='CapeVisualizer', name='registry_cape')),
    'KeyposeLocalVisualizer':
    ('VISUALIZERS', lambda d: dict(type='KeyposeLocalVisualizer', name='registry_keypose')),
    'CpuFallbackAmpOptimWrapper': ('OPTIM_WRAPPERS', lambda d: dict(
        type='CpuFallbackAmpOptimWrapper',
        accumulative_counts=2,
        optimizer=torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=0.1))),
    'SapiensLayerDecayOptimWrapperConstructor': ('OPTIM_WRAPPER_CONSTRUCTORS', lambda d: dict(
        type='SapiensLayerDecayOptimWrapperConstructor',
        optim_wrapper_cfg=dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=5e-4)),
        paramwise_cfg=dict(layer_decay_rate=0.85))),
}


def test_every_registered_type_has_a_build_case():
    registered = keypose_types()
    assert registered, 'importing keypose_ext registered nothing'
    assert registered == {(reg, name) for name, (reg, _) in CASES.items()}


@pytest.mark.parametrize('name', sorted(CASES))
def test_builds_from_config(name, data):
    reg_name, make_cfg = CASES[name]
    cfg = make_cfg(data)
    obj = getattr(R, reg_name).build(cfg)
    assert type(obj).__name__ == name
    if name == 'SapiensLayerDecayOptimWrapperConstructor':
        wrapper = obj(R.MODELS.build(_sapiens_model(data)))
        assert isinstance(wrapper, OptimWrapper)

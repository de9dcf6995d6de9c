# Seed 000: overfit ResNet-18 + 27-output depth keypoint regression on one bottle
# video (252 frames, 9 Objectron keypoints with x, y, depth), batch 16, Adam 1e-4,
# 1000 epochs, no augmentation, frames cached in memory. Goal: loss < 1e-4.
_base_ = [
    '../_base_/default_runtime.py',
    '../_base_/schedules/adam_1e-4_1000e.py',
]
# (after `_base_`: mmengine then reads this as a classic config with imports)
from keypose_ext.datasets.bottle_metainfo import NUM_KEYPOINTS  # noqa: E402
from keypose_ext.datasets.bottle_video_dataset import recommended_num_workers  # noqa: E402

input_size = (224, 224)  # (w, h), as the seed's torchvision ResNet input
# K comes from the dataset metainfo; the head and BottleVideoDataset refuse a codec with
# another count.
codec = dict(
    type='DepthKeypointCodec', input_size=input_size, depth_scale=1.0, num_keypoints=NUM_KEYPOINTS)

model = dict(
    type='TopdownPoseEstimator',
    data_preprocessor=dict(
        type='PoseDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True),
    backbone=dict(
        type='ResNet',
        depth=18,
        # Nothing is downloaded at run time. For the seed's ImageNet start, point this
        # at a local file: init_cfg=dict(type='Pretrained', checkpoint='resnet18.pth')
        init_cfg=None),
    head=dict(
        type='DepthKeypointRegressionHead',
        in_channels=512,
        num_joints=NUM_KEYPOINTS,
        loss=dict(type='MSELoss', use_target_weight=True),
        decoder=codec),
    test_cfg=dict(flip_test=False))

# No augmentation (seed: pure overfitting): the whole frame is the model input.
train_pipeline = [
    dict(type='LoadImage'),
    dict(type='GetBBoxCenterScale', padding=1.0),
    dict(type='TopdownAffine', input_size=input_size),
    dict(type='GenerateTarget', encoder=codec),
    dict(type='PackDepthPoseInputs'),
]
test_pipeline = [
    dict(type='LoadImage'),
    dict(type='GetBBoxCenterScale', padding=1.0),
    dict(type='TopdownAffine', input_size=input_size),
    dict(type='PackDepthPoseInputs'),
]

data_root = 'data/bottle_data/'
# cache=True: every frame is decoded once into a shared .npy; the pipelines are
# deterministic, so each sample's packed output is also kept after its first pass
# (cache_outputs='auto'), and 0 workers serve it fastest.
dataset = dict(
    type='BottleVideoDataset',
    data_root=data_root,
    ann_file='annotations.json',
    data_prefix=dict(img='images/'),
    cache=True)
num_workers = recommended_num_workers(cache=True, outputs_cached=True)

train_dataloader = dict(
    batch_size=16,
    num_workers=num_workers,
    persistent_workers=num_workers > 0,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(dataset, pipeline=train_pipeline))
# Overfitting: validation is the same video, without shuffling.
val_dataloader = dict(
    batch_size=16,
    num_workers=num_workers,
    persistent_workers=num_workers > 0,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False, round_up=False),
    dataset=dict(dataset, pipeline=test_pipeline, test_mode=True))
test_dataloader = val_dataloader

# On a GPU the whole clip is packed once into one device tensor and batches are drawn
# on the device (bf16 autocast, channels-last, one host read per log line); on a CPU,
# or with a random pipeline, it is the plain KeyposeEpochBasedTrainLoop. Same keys either
# way; train_cfg.fast_path=False forces the plain path (docs/bottle_model.md).
train_cfg = dict(_delete_=True, type='DeviceResidentTrainLoop', max_epochs=1000, val_interval=50)

# Every batch has the same shape (but the last of an epoch): let cuDNN pick its kernels once.
env_cfg = dict(cudnn_benchmark=True)

val_evaluator = dict(type='DepthKeypointMetric')
test_evaluator = val_evaluator

default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(
        interval=100,
        save_last=True,
        max_keep_ckpts=2,
        save_best='bottle/mean_px_error',
        rule='less'))
visualizer = dict(type='BottleBoxVisualizer')

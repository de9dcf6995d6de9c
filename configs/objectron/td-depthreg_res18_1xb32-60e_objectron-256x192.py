# One Objectron category from many videos: ResNet-18 + DepthKeypointRegressionHead predicts
# the 9 box keypoints (x, y, depth) of each frame; the boxes are lifted to 3D with the frame's
# intrinsics and scored with Objectron's own evaluation (3D IoU, AP@0.5, 2D error, viewpoint).
# Data: tools/dataset_converters/objectron_to_multivideo.py (split by video), docs/objectron.md.
_base_ = ['../_base_/default_runtime.py']

# (w, h): Objectron's frames are portrait 1440 x 1920 (3:4).
input_size = (192, 256)
# Bottles are filmed at ~0.3-1.5 m: encode depth as (d - 0.8) / 0.5, on the scale of x, y.
codec = dict(type='DepthKeypointCodec', input_size=input_size, depth_scale=0.5, depth_offset=0.8)

model = dict(
    type='TopdownPoseEstimator',
    data_preprocessor=dict(
        type='PoseDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True),
    # Nothing is downloaded at run time; for an ImageNet start point at a local file:
    # init_cfg=dict(type='Pretrained', checkpoint='resnet18.pth')
    backbone=dict(type='ResNet', depth=18, init_cfg=None),
    head=dict(
        type='DepthKeypointRegressionHead',
        in_channels=512,
        num_joints=9,
        loss=dict(type='MSELoss', use_target_weight=True),
        decoder=codec),
    test_cfg=dict(flip_test=False))

# What the metrics and the visualizer read from each sample, besides mmpose's usual keys.
meta_keys = ('id', 'img_id', 'img_path', 'category_id', 'ori_shape', 'img_shape', 'input_size',
             'input_center', 'input_scale', 'flip', 'flip_direction', 'flip_indices',
             'dataset_name', 'video_id', 'frame_index', 'camera_intrinsics', 'objectron_visibility')

# Augmentation that keeps the box geometry consistent: a mirror relabels the corners
# (RandomBoxFlip: Objectron order 1<->5, 2<->6, 3<->7, 4<->8, depths and 3D follow); crops
# only translate (a zoom or a rotation about the crop centre would change the apparent
# focal length and break the depth <-> size cue); colour jitter leaves geometry alone.
train_pipeline = [
    dict(type='LoadImage'),
    dict(type='GetBBoxCenterScale', padding=1.0),
    dict(type='RandomBoxFlip', prob=0.5),
    dict(
        type='RandomBBoxTransform',
        shift_factor=0.08,
        shift_prob=0.5,
        scale_factor=(1.0, 1.0),
        scale_prob=0.0,
        rotate_factor=0.0,
        rotate_prob=0.0),
    dict(type='TopdownAffine', input_size=input_size),
    dict(type='PhotometricDistortion'),
    dict(type='GenerateTarget', encoder=codec),
    dict(type='PackDepthPoseInputs', meta_keys=meta_keys),
]
test_pipeline = [
    dict(type='LoadImage'),
    dict(type='GetBBoxCenterScale', padding=1.0),
    dict(type='TopdownAffine', input_size=input_size),
    dict(type='PackDepthPoseInputs', meta_keys=meta_keys),
]

data_root = 'data/objectron_bottle/'
dataset = dict(
    type='ObjectronMultiVideoDataset',
    data_root=data_root,
    # Decoded frames shared by all videos, workers and ranks of a machine, up to this many
    # MB (1440 x 1920 frames: ~7.9 MB each); the rest are read from their JPEG files.
    cache_budget_mb=8192)

train_dataloader = dict(
    batch_size=32,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(dataset, ann_file='annotations_train.json', pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=32,
    num_workers=4,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False, round_up=False),
    dataset=dict(dataset, ann_file='annotations_val.json', pipeline=test_pipeline, test_mode=True))
test_dataloader = dict(
    val_dataloader,
    dataset=dict(dataset, ann_file='annotations_test.json', pipeline=test_pipeline, test_mode=True))

# Objectron's evaluation of the lifted boxes, plus the 2D/depth errors of the keypoints.
val_evaluator = [
    dict(type='ObjectronBoxMetric', iou_thresholds=(0.5, )),
    dict(type='DepthKeypointMetric'),
]
test_evaluator = val_evaluator

train_cfg = dict(type='KeyposeEpochBasedTrainLoop', max_epochs=60, val_interval=5)
val_cfg = dict()
test_cfg = dict()
optim_wrapper = dict(
    type='OptimWrapper', optimizer=dict(type='Adam', lr=1e-3), clip_grad=dict(max_norm=10.0))
param_scheduler = [
    dict(type='LinearLR', begin=0, end=300, start_factor=0.01, by_epoch=False),
    dict(type='CosineAnnealingLR', begin=0, end=60, T_max=60, by_epoch=True),
]
auto_scale_lr = dict(base_batch_size=32)

default_hooks = dict(
    logger=dict(interval=20),
    checkpoint=dict(interval=5, save_best='objectron/iou_3d', rule='greater'))
# tools/test.py --show-dir: lifted true/predicted boxes per frame + iou_<video>.png per video.
visualizer = dict(
    type='BottleBoxVisualizer', vis_backends=[dict(type='LocalVisBackend')], name='visualizer')

# CPU demo on synthetic MP-100 (tools/dataset_converters/make_synthetic_mp100.py):
# 8 drawn categories (1 to 68 keypoints), split 1 by category_splits.json, 1-shot.
# Same model, pipeline, metric and schedule type as the MP-100 configs; a 3-stage
# ResNet-18 from scratch (no download) at 128x128 and a smaller head.
_base_ = ['./_base_/capeseq_res50_mp100-256x256.py']

input_size = (128, 128)
data_root = 'data/synthetic_mp100/'
model = dict(
    backbone=dict(
        depth=18,
        num_stages=3,
        strides=(1, 2, 2),
        dilations=(1, 1, 1),
        out_indices=(2, ),
        init_cfg=None),
    head=dict(
        in_channels=256, embed_dims=128, num_layers=2, num_heads=4, ffn_dims=256, dropout=0.0))

train_pipeline = [
    dict(type='LoadImage'),
    dict(type='GetBBoxCenterScale', padding=1.25),
    dict(type='RandomFlip', direction='horizontal'),
    dict(type='RandomBBoxTransform', shift_factor=0.1, scale_factor=(0.8, 1.2), rotate_factor=15),
    dict(type='TopdownAffine', input_size=input_size),
]
val_pipeline = [
    dict(type='LoadImage'),
    dict(type='GetBBoxCenterScale', padding=1.25),
    dict(type='TopdownAffine', input_size=input_size),
]
_data = dict(data_root=data_root, category_split_file='category_splits.json')
train_dataloader = dict(
    batch_size=8,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(episodes_per_epoch=80, pipeline=train_pipeline, **_data))
val_dataloader = dict(
    batch_size=16,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        episodes_per_category=10, num_queries_per_episode=5, pipeline=val_pipeline, **_data))
test_dataloader = dict(
    batch_size=16,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        episodes_per_category=20, num_queries_per_episode=5, pipeline=val_pipeline, **_data))

train_cfg = dict(max_epochs=20, val_interval=10)
# a backbone trained from scratch: one lr for all parameters
optim_wrapper = dict(
    _delete_=True,
    type='CpuFallbackAmpOptimWrapper',
    loss_scale='dynamic',
    accumulative_counts=1,
    optimizer=dict(type='AdamW', lr=5e-4, weight_decay=1e-4),
    clip_grad=dict(max_norm=1.0, norm_type=2))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(type='MultiStepLR', by_epoch=True, begin=0, end=20, milestones=[16], gamma=0.1),
]
default_hooks = dict(logger=dict(interval=10), checkpoint=dict(interval=10))

# Seed 002's "minimal" 4 GB setting: input 320x240 (H x W), heatmaps 80x60,
# batch 1 x 32 accumulation. Same two phases and memory strategy as
# stage1_gtx1650.py, with more headroom (phase 2 ~3.2 GiB by tools/check_env.py).
_base_ = ['./stage1_gtx1650.py']

codec = dict(type='UDPHeatmap', input_size=(240, 320), heatmap_size=(60, 80), sigma=2.5)
model = dict(backbone=dict(img_size=(320, 240)), head=dict(decoder=codec))
train_pipeline = [
    dict(type='LoadImage'),
    dict(type='GetBBoxCenterScale'),
    dict(type='RandomFlip', direction='horizontal'),
    dict(type='RandomHalfBody'),
    dict(type='RandomBBoxTransform'),
    dict(type='TopdownAffine', input_size=codec['input_size'], use_udp=True),
    dict(type='GenerateTarget', encoder=codec),
    dict(type='PackPoseInputs'),
]
val_pipeline = [
    dict(type='LoadImage'),
    dict(type='GetBBoxCenterScale'),
    dict(type='TopdownAffine', input_size=codec['input_size'], use_udp=True),
    dict(type='PackPoseInputs'),
]
train_dataloader = dict(batch_size=1, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=val_pipeline))
test_dataloader = val_dataloader
optim_wrapper = dict(accumulative_counts=32)

# Seed 002's "minimal" 4 GB setting: input 320x240 (H x W), heatmaps 80x60,
# batch 1 x 32 accumulation. Same two phases and LoRA phase 2 as stage1_gtx1650.py,
# with more headroom (python tools/check_env.py --config <this file>).
_base_ = ['./stage1_gtx1650.py']

codec = dict(type='UDPHeatmap', input_size=(240, 320), heatmap_size=(60, 80), sigma=2.5)
model = dict(backbone=dict(img_size=codec['input_size'][::-1]), head=dict(decoder=codec))
# stage1_gtx1650.py's pipelines with this codec
train_pipeline = [
    dict(type='LoadImage'),
    dict(type='GetBBoxCenterScale'),
    dict(type='RandomFlip', direction='horizontal'),
    dict(type='RandomHalfBody'),
    dict(type='RandomBBoxTransform'),
    dict(type='TopdownAffine', input_size=codec['input_size'], use_udp=True),
    dict(type='PhotometricDistortion'),
    dict(
        type='Albumentation',
        transforms=[
            dict(type='Blur', p=0.1),
            dict(type='MedianBlur', p=0.1),
            dict(
                type='CoarseDropout',
                max_holes=1,
                max_height=0.4,
                max_width=0.4,
                min_holes=1,
                min_height=0.2,
                min_width=0.2,
                p=1.0),
        ]),
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

# The original A100 settings of seed 002: input 512x384 (H x W), heatmaps 128x96,
# batch 32 without accumulation, 4 workers, full fine-tuning in phase 2 on the GPU.
# Memory (python tools/check_env.py --config <this file>): phase 1 ~7 GiB (fp32 frozen
# backbone, batch 32); phase 2 trains all 1.13 B parameters = 18 GiB of weights, grads
# and AdamW + activations: ~30 GiB with activation checkpointing, so with_cp stays on.
_base_ = ['./stage1_gtx1650.py']

codec = dict(type='UDPHeatmap', input_size=(384, 512), heatmap_size=(96, 128), sigma=4)
model = dict(
    backbone=dict(img_size=codec['input_size'][::-1], frozen_dtype=None, with_cp=True, lora=None),
    head=dict(decoder=codec))
custom_hooks = [
    dict(
        type='SapiensPhaseSwitchHook',
        switch_epoch=10,
        frozen_modules=['backbone'],
        phase2=dict(mode='full', with_cp=True)),
]
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
train_dataloader = dict(batch_size=32, num_workers=4, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(batch_size=32, num_workers=4, dataset=dict(pipeline=val_pipeline))
test_dataloader = val_dataloader
optim_wrapper = dict(accumulative_counts=1)

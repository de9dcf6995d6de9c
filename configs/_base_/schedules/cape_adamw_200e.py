# CAPE schedule: AdamW, gradient clipping, mixed precision (CpuFallbackAmpOptimWrapper falls
# back to fp32 on a CPU) and gradient accumulation: batch 8 x 2 = 16 per update.
# KeyposeEpochBasedTrainLoop: mmengine's epoch loop that resumes mid-epoch exactly.
train_cfg = dict(type='KeyposeEpochBasedTrainLoop', max_epochs=200, val_interval=10)
val_cfg = dict()
test_cfg = dict()
optim_wrapper = dict(
    type='CpuFallbackAmpOptimWrapper',
    loss_scale='dynamic',
    accumulative_counts=2,
    optimizer=dict(type='AdamW', lr=1e-4, weight_decay=1e-4),
    clip_grad=dict(max_norm=1.0, norm_type=2),
    # a pretrained backbone moves slower than the new head
    paramwise_cfg=dict(custom_keys={'backbone': dict(lr_mult=0.1)}))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', by_epoch=True, begin=0, end=200, milestones=[160, 180], gamma=0.1),
]
auto_scale_lr = dict(base_batch_size=16)

# Seed 002's two phases (110 epochs, 0-based epochs as in MMEngine):
#   phase 1, epochs 0-9: backbone frozen, lr 5e-4 after a 1-epoch linear warm-up;
#   phase 2, epochs 10-109: fine-tuning, cosine decay from 5e-4 to 5e-6.
# The freeze/unfreeze itself is SapiensPhaseSwitchHook(switch_epoch=10) in the model
# config. AdamW + layer-wise lr decay (Sapiens' 0.85) over *all* parameters, so the
# optimizer built at the start also holds the backbone once it is unfrozen.
# KeyposeEpochBasedTrainLoop: mmengine's epoch loop that resumes mid-epoch exactly.
train_cfg = dict(type='KeyposeEpochBasedTrainLoop', max_epochs=110, val_interval=5)
optim_wrapper = dict(
    type='CpuFallbackAmpOptimWrapper',  # keypose_ext's: float32 on a CPU
    optimizer=dict(type='AdamW', lr=5e-4, betas=(0.9, 0.999), weight_decay=0.1),
    constructor='SapiensLayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(layer_decay_rate=0.85),
    clip_grad=dict(max_norm=1.0, norm_type=2))
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=1e-3,
        by_epoch=True,
        begin=0,
        end=1,
        convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        by_epoch=True,
        begin=10,
        end=110,
        T_max=100,
        eta_min_ratio=1e-2,
        convert_to_iter_based=True),
]
# The lr is for an effective batch of 32 (batch_size x accumulative_counts).
auto_scale_lr = dict(base_batch_size=32)

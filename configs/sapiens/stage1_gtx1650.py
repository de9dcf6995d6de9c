# Sapiens-1B stage-1 fine-tuning on COCO keypoints for a 4 GB GPU (GTX 1650), seed 002:
# input 384x288 (H x W), heatmaps 96x72, batch 2 x 16 accumulation (= 32), 2 workers,
# AMP; phase 1 = backbone frozen for 10 epochs at lr 5e-4, phase 2 = 100 epochs of
# fine-tuning with a cosine schedule; checkpoints every 5 epochs + best coco/AP + last.
#
# Memory (why the phase-2 strategy below): Sapiens-1B has 1.13 B parameters, 4.5 GB in
# fp32, so the seed's "full fine-tuning at batch 2" cannot fit 4 GB: weights + grads +
# AdamW alone are 18 GB. What fits (tools/check_env.py prints the estimates):
#   phase 1: the frozen backbone is stored in fp16 (2.1 GiB) and runs without
#            gradients; only the heatmap head trains        -> ~2.5 GiB peak;
#   phase 2: blocks 0-37 stay frozen in fp16; the last 2 blocks + final norm train in
#            fp32 with AMP, activation checkpointing, fused AdamW and layer-wise lr
#            decay                                           -> ~3.3 GiB peak.
# More trainable blocks need more memory (3 blocks ~3.7 GiB: too much for 4 GB);
# full fine-tuning is configs/sapiens/stage1_a100.py.
_base_ = [
    '../_base_/default_runtime.py',
    '../_base_/schedules/sapiens_two_phase.py',
    '../_base_/datasets/coco_topdown.py',
]

pretrained = 'data/pretrained/sapiens_1b/sapiens_1b_epoch_173_torchscript.pt2'
codec = dict(type='UDPHeatmap', input_size=(288, 384), heatmap_size=(72, 96), sigma=3)

model = dict(
    type='TopdownPoseEstimator',
    data_preprocessor=dict(
        type='PoseDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True),
    backbone=dict(
        type='SapiensTorchScriptBackbone',
        checkpoint=pretrained,
        arch='sapiens_1b',
        img_size=(384, 288),  # (H, W), multiples of the 16-pixel patch
        trainable_layers=0,  # built frozen (phase 1), so the model fits when moved to the GPU
        frozen_dtype='float16',  # GTX 1650 (Turing) has no bf16
        with_cp=True),
    head=dict(
        type='HeatmapHead',
        in_channels=1536,
        out_channels=17,
        # 256-channel deconvs (ViTPose's) instead of Sapiens' 768: 7 M instead of 28 M
        # head parameters, ~0.35 GiB less with AdamW.
        deconv_out_channels=(256, 256),
        deconv_kernel_sizes=(4, 4),
        loss=dict(type='KeypointMSELoss', use_target_weight=True),
        decoder=codec),
    test_cfg=dict(flip_test=True, flip_mode='heatmap', shift_heatmap=False))

custom_hooks = [
    dict(type='SapiensPhaseSwitchHook', switch_epoch=10, frozen_modules=['backbone'],
         phase2=dict(trainable_layers=2, with_cp=True)),
]

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
train_dataloader = dict(batch_size=2, num_workers=2, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(batch_size=8, num_workers=2, dataset=dict(pipeline=val_pipeline))
test_dataloader = val_dataloader

optim_wrapper = dict(
    accumulative_counts=16,  # 2 x 16 = the original batch of 32
    # fused AdamW: no per-step fp32 temporaries (~0.2 GiB less in phase 2)
    optimizer=dict(fused=True))

default_hooks = dict(
    logger=dict(type='LoggerHook', interval=50),
    checkpoint=dict(type='CheckpointHook', interval=5, save_best='coco/AP', rule='greater',
                    save_last=True, max_keep_ckpts=3))

# TensorBoard: tensorboard --logdir work_dirs/stage1_gtx1650
# (W&B: add dict(type='WandbVisBackend', init_kwargs=dict(project='sapiens')))
vis_backends = [dict(type='LocalVisBackend'), dict(type='TensorboardVisBackend')]
visualizer = dict(
    type='KeyposeLocalVisualizer', vis_backends=vis_backends, name='visualizer')

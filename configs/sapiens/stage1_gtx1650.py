# Sapiens-1B stage-1 fine-tuning on COCO keypoints for a 4 GB GPU (GTX 1650), seed 002:
# input 384x288 (H x W), heatmaps 96x72, batch 2 x 16 accumulation (= 32), 2 workers,
# AMP; phase 1 = backbone frozen for 10 epochs at lr 5e-4, phase 2 = 100 epochs of
# fine-tuning with a cosine schedule; checkpoints every 5 epochs + best coco/AP + last.
#
# Memory (why phase 2 uses low-rank adapters): Sapiens-1B has 1.13 B parameters, 4.5 GB
# in fp32; weights + grads + AdamW of all of them are 18 GB, so the seed's "full
# fine-tuning at batch 2" cannot sit on a 4 GB GPU. What fits (python tools/check_env.py
# prints the estimates from this file):
#   phase 1: the frozen backbone is stored in fp16 (2.1 GiB) and runs without
#            gradients; only the heatmap head trains;
#   phase 2 (route 'lora', this file): rank-8 adapters on every block's attention and
#            MLP + the final norm train (7.9 M parameters); the fp16 base weights stay
#            frozen, gradients flow through all 40 blocks with activation checkpointing.
#            SapiensLoRAMergeHook writes *_merged.pth copies with the adapters folded
#            into plain weights (tools/test.py, init_model);
#   other routes: td-hm_sapiens-1b-last2_1xb2-110e_coco-384x288.py (last 2 blocks, the
#            earlier default) and td-hm_sapiens-1b-fsdp-offload_1xb2-100e_coco-384x288.py
#            (every parameter, FSDP CPU offload, ~20 GB
#            of host RAM). docs/sapiens.md compares them.
_base_ = [
    '../_base_/default_runtime.py',
    '../_base_/schedules/sapiens_two_phase.py',
    '../_base_/datasets/coco_topdown.py',
]

pretrained = 'data/pretrained/sapiens_1b/sapiens_1b_epoch_173_torchscript.pt2'
# (W, H), as mmpose's codecs and TopdownAffine take it; heatmaps at 1/4.
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
        img_size=codec['input_size'][::-1],  # (H, W) from the codec's (W, H)
        trainable_layers=0,  # built frozen (phase 1), so the model fits when moved to the GPU
        frozen_dtype='float16',  # GTX 1650 (Turing) has no bf16
        with_cp=True,
        lora=dict(rank=8, alpha=16)),
    head=dict(
        type='HeatmapHead',
        in_channels=1536,  # sapiens_1b embed dims
        out_channels=17,
        # 256-channel deconvs (ViTPose's) instead of Sapiens' 768 (+ two 768 1x1 convs):
        # 7 M instead of 28 M head parameters, ~0.35 GiB less with AdamW.
        deconv_out_channels=(256, 256),
        deconv_kernel_sizes=(4, 4),
        loss=dict(type='KeypointMSELoss', use_target_weight=True),
        decoder=codec),
    test_cfg=dict(flip_test=True, flip_mode='heatmap', shift_heatmap=False))

custom_hooks = [
    dict(
        type='SapiensPhaseSwitchHook',
        switch_epoch=10,
        frozen_modules=['backbone'],
        phase2=dict(mode='lora', with_cp=True)),
    dict(type='SapiensLoRAMergeHook'),
]

# Meta's Sapiens pose augmentation after the affine crop, as in its COCO configs: mmpose's
# PhotometricDistortion and Albumentations (1.4.x, mmpose's Albumentation wrapper) blur,
# median blur and one coarse-dropout hole of 20-40 % of the crop's height and width.
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
train_dataloader = dict(batch_size=2, num_workers=2, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(batch_size=8, num_workers=2, dataset=dict(pipeline=val_pipeline))
test_dataloader = val_dataloader

optim_wrapper = dict(
    accumulative_counts=16,  # 2 x 16 = the original batch of 32
    # fused AdamW: no per-step fp32 temporaries
    optimizer=dict(fused=True))

default_hooks = dict(
    logger=dict(type='LoggerHook', interval=50),
    checkpoint=dict(
        interval=5, save_best='coco/AP', rule='greater', save_last=True, max_keep_ckpts=3))

# TensorBoard: tensorboard --logdir work_dirs/stage1_gtx1650
# (W&B: add dict(type='WandbVisBackend', init_kwargs=dict(project='sapiens')))
vis_backends = [dict(type='LocalVisBackend'), dict(type='TensorboardVisBackend')]
visualizer = dict(type='KeyposeLocalVisualizer', vis_backends=vis_backends, name='visualizer')

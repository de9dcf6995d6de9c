# CAPE on MP-100: ResNet-50 + CapeSequenceHead, 256x256 crops.
# Split/shot configs in configs/cape/ inherit this file; other backbones replace
# model.backbone and head.in_channels (see capeseq_res18_1xb8-200e_mp100-split1-1shot-256x256.py).
_base_ = [
    '../../_base_/default_runtime.py', '../../_base_/datasets/mp100.py',
    '../../_base_/schedules/cape_adamw_200e.py'
]

model = dict(
    type='CapeEstimator',
    data_preprocessor=dict(
        type='CapeDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True),
    backbone=dict(
        type='ResNet',
        depth=50,
        out_indices=(3, ),
        # ImageNet weights, MMPose's standard: torch hub caches the file in
        # ~/.cache/torch/hub/checkpoints/ (downloaded once if absent; offline, copy it there).
        init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet50')),
    head=dict(
        type='CapeSequenceHead',
        in_channels=2048,
        embed_dims=256,
        num_layers=3,
        num_heads=8,
        ffn_dims=1024,
        dropout=0.1,
        # coordinates refine a support-to-query feature-matching proposal
        coord_reference='similarity',
        loss_ce_weight=1.0,
        loss_coords_weight=5.0,
        loss_proposal_weight=1.0),
    test_cfg=dict(end_threshold=0.5))

default_hooks = dict(
    checkpoint=dict(interval=10, save_best='PCK@0.2', rule='greater'),
    visualization=dict(type='PoseVisualizationHook', enable=False))
visualizer = dict(
    type='CapeVisualizer', name='visualizer', vis_backends=[dict(type='LocalVisBackend')])

"""Shared helpers of the CAPE tests: tiny synthetic MP-100 data and a tiny model."""
import copy

from keypose_ext.testing.synthetic_mp100 import make_synthetic_mp100

KEYPOINT_COUNTS = (1, 3, 5, 8, 12, 17)
INPUT_SIZE = (64, 64)
PIPELINE = [
    dict(type='LoadImage'),
    dict(type='GetBBoxCenterScale', padding=1.25),
    dict(type='TopdownAffine', input_size=INPUT_SIZE),
]
AUG_PIPELINE = PIPELINE[:2] + [
    dict(type='RandomFlip', direction='horizontal'),
    dict(type='RandomBBoxTransform', scale_factor=(0.8, 1.2), rotate_factor=15),
] + PIPELINE[2:]


def make_data(root, images_per_category=8, keypoint_counts=KEYPOINT_COUNTS, **kw):
    """Synthetic MP-100 under ``root``; returns the generator's summary."""
    return make_synthetic_mp100(
        str(root), keypoint_counts=keypoint_counts, images_per_category=images_per_category, **kw)


def dataset_cfg(root, subset='train', **kw):
    cfg = dict(
        type='MP100EpisodicDataset',
        data_root=str(root),
        ann_file=f'annotations/mp100_split1_{subset}.json',
        data_prefix=dict(img='images/'),
        pipeline=copy.deepcopy(PIPELINE),
        test_mode=subset != 'train')
    cfg.update(kw)
    return cfg


def tiny_model_cfg(**head):
    h = dict(
        type='CapeSequenceHead',
        in_channels=128,
        embed_dims=32,
        num_layers=2,
        num_heads=4,
        ffn_dims=64,
        dropout=0.0)
    h.update(head)
    return dict(
        type='CapeEstimator',
        data_preprocessor=dict(
            type='CapeDataPreprocessor',
            mean=[123.675, 116.28, 103.53],
            std=[58.395, 57.12, 57.375],
            bgr_to_rgb=True),
        backbone=dict(
            type='ResNet',
            depth=18,
            num_stages=2,
            strides=(1, 2),
            dilations=(1, 1),
            out_indices=(1, ),
            init_cfg=None),
        head=h)

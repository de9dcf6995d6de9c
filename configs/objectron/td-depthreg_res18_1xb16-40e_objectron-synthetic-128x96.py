# A short CPU run on the synthetic multi-video set (portrait clips laid out as Objectron's):
#   python tools/dataset_converters/objectron_to_multivideo.py --synthetic 10 \
#       --synthetic-frames 24 --synthetic-size 144 192 --synthetic-box-scale 1.6 2.0 \
#       --split 0.6 0.2 0.2 --out-dir data/objectron_synthetic
#   python tools/train.py \
#       configs/objectron/td-depthreg_res18_1xb16-40e_objectron-synthetic-128x96.py
#   python tools/test.py \
#       configs/objectron/td-depthreg_res18_1xb16-40e_objectron-synthetic-128x96.py \
#       work_dirs/td-depthreg_res18_1xb16-40e_objectron-synthetic-128x96/epoch_40.pth --show-dir vis
# Same model, augmentation and metrics as td-depthreg_res18_1xb32-60e_objectron-256x192.py;
# smaller input, data and schedule.
_base_ = ['./td-depthreg_res18_1xb32-60e_objectron-256x192.py']

input_size = (96, 128)  # (w, h), 3:4 like the 144 x 192 synthetic frames
codec = dict(type='DepthKeypointCodec', input_size=input_size, depth_scale=0.1, depth_offset=0.8)
model = dict(head=dict(decoder=codec))

meta_keys = {{_base_.meta_keys}}
train_pipeline = [
    dict(type='LoadImage'),
    dict(type='GetBBoxCenterScale', padding=1.0),
    dict(type='RandomBoxFlip', prob=0.5),
    dict(
        type='RandomBBoxTransform',
        shift_factor=0.08,
        shift_prob=0.5,
        scale_factor=(1.0, 1.0),
        scale_prob=0.0,
        rotate_factor=0.0,
        rotate_prob=0.0),
    dict(type='TopdownAffine', input_size=input_size),
    dict(type='PhotometricDistortion'),
    dict(type='GenerateTarget', encoder=codec),
    dict(type='PackDepthPoseInputs', meta_keys=meta_keys),
]
test_pipeline = [
    dict(type='LoadImage'),
    dict(type='GetBBoxCenterScale', padding=1.0),
    dict(type='TopdownAffine', input_size=input_size),
    dict(type='PackDepthPoseInputs', meta_keys=meta_keys),
]

data_root = 'data/objectron_synthetic/'
loader = dict(batch_size=16, num_workers=0, persistent_workers=False)
train_dataloader = dict(
    loader, dataset=dict(data_root=data_root, cache_budget_mb=64, pipeline=train_pipeline))
val_dataloader = dict(
    loader, dataset=dict(data_root=data_root, cache_budget_mb=64, pipeline=test_pipeline))
test_dataloader = dict(
    loader, dataset=dict(data_root=data_root, cache_budget_mb=64, pipeline=test_pipeline))

train_cfg = dict(max_epochs=40, val_interval=10)
param_scheduler = [
    dict(type='LinearLR', begin=0, end=20, start_factor=0.1, by_epoch=False),
    dict(type='CosineAnnealingLR', begin=0, end=40, T_max=40, by_epoch=True),
]
default_hooks = dict(logger=dict(interval=5), checkpoint=dict(interval=10))

# A short CPU run on the built-in synthetic bottle video (README's first command):
# 48 frames at 160x120 (tools/dataset_converters/make_synthetic_bottle_video.py),
# 96x96 input, 40 epochs at lr 1e-3. Same model, data pipeline and metrics as the
# seed's config; only the size and length differ.
_base_ = ['./td-depthreg_res18_1xb16-1000e_bottle-224x224.py']
from keypose_ext.datasets.bottle_metainfo import NUM_KEYPOINTS  # noqa: E402

input_size = (96, 96)
codec = dict(
    type='DepthKeypointCodec', input_size=input_size, depth_scale=1.0, num_keypoints=NUM_KEYPOINTS)
model = dict(head=dict(decoder=codec))

train_pipeline = [
    dict(type='LoadImage'),
    dict(type='GetBBoxCenterScale', padding=1.0),
    dict(type='TopdownAffine', input_size=input_size),
    dict(type='GenerateTarget', encoder=codec),
    dict(type='PackDepthPoseInputs'),
]
test_pipeline = [
    dict(type='LoadImage'),
    dict(type='GetBBoxCenterScale', padding=1.0),
    dict(type='TopdownAffine', input_size=input_size),
    dict(type='PackDepthPoseInputs'),
]
data_root = 'data/bottle_synthetic/'
train_dataloader = dict(dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader

train_cfg = dict(max_epochs=40, val_interval=10)
optim_wrapper = dict(optimizer=dict(lr=1e-3))
default_hooks = dict(logger=dict(interval=3), checkpoint=dict(interval=10))

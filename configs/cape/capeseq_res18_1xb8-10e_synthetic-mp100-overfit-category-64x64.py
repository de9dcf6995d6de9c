# The learning check that needs the query (issue: the single-image mode cannot tell):
# every image of category 6 (17 keypoints) of synthetic MP-100, support and query
# drawn as *different* images, augmentation off. Validation uses the same images
# (fixed pairs of them). Success: PCK@0.2 >= 0.9 on these pairs, and the same model
# with the query crop blanked falls to chance:
#   python tools/test.py THIS_CONFIG CKPT --cfg-options model.data_preprocessor.blank_query=True
# The same rewrite of any CAPE config: tools/train.py CONFIG --debug-overfit-category CAT
_base_ = ['./capeseq_res18_1xb8-20e_synthetic-mp100-128x128.py']

input_size = (64, 64)
debug = dict(debug_overfit_category=6)
model = dict(
    backbone=dict(num_stages=2, strides=(1, 2), dilations=(1, 1), out_indices=(1, )),
    head=dict(in_channels=128, embed_dims=64, num_heads=4, ffn_dims=128))
pipeline = [
    dict(type='LoadImage'),
    dict(type='GetBBoxCenterScale', padding=1.25),
    dict(type='TopdownAffine', input_size=input_size),
]
train_dataloader = dict(
    batch_size=8,
    dataset=dict(num_queries_per_episode=1, episodes_per_epoch=40, pipeline=pipeline, **debug))
_val = dict(
    batch_size=16,
    dataset=dict(
        ann_file='annotations/mp100_split1_train.json',
        split_key='train',
        episodes_per_category=20,
        num_queries_per_episode=5,
        pipeline=pipeline,
        **debug))
val_dataloader = _val
test_dataloader = _val

train_cfg = dict(max_epochs=10, val_interval=5)
optim_wrapper = dict(optimizer=dict(lr=1e-3, weight_decay=0.0))
param_scheduler = []
default_hooks = dict(
    logger=dict(interval=5), checkpoint=dict(interval=10, save_best=None, max_keep_ckpts=1))

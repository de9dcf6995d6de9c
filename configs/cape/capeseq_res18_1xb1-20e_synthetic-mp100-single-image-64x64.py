# Seed 001's single-image mode on synthetic MP-100: one image of category 6
# (17 keypoints) is every support and the query, in training and in validation;
# random augmentation is removed. Success: loss < 0.1 and PCK@0.2 >= 95 % within
# 20 epochs x 20 episodes. The same rewrite of any CAPE config:
#   python tools/train.py CONFIG --debug-single-image CAT [--debug-single-image-index I]
# What it shows: data path, losses, decoding and fitting work. What it does NOT show:
# that the model reads the query image. Support = query, and every decoder token
# embeds its support keypoint's location, so the answer is in the supports whatever
# coord_reference is; with the query crop blanked
# (--cfg-options model.data_preprocessor.blank_query=True) it still scores ~1.0.
# The check that needs the query:
# capeseq_res18_1xb8-10e_synthetic-mp100-overfit-category-64x64.py.
_base_ = ['./capeseq_res18_1xb8-20e_synthetic-mp100-128x128.py']

input_size = (64, 64)
debug = dict(debug_single_image=6, debug_single_image_index=0)
model = dict(
    backbone=dict(num_stages=2, strides=(1, 2), dilations=(1, 1), out_indices=(1, )),
    # coordinates as residuals on the crop centre (not on the support location or a
    # matching proposal); this does not hide the support pose from the tokens
    head=dict(in_channels=128, embed_dims=64, num_heads=4, ffn_dims=128, coord_reference='center'))
pipeline = [
    dict(type='LoadImage'),
    dict(type='GetBBoxCenterScale', padding=1.25),
    dict(type='TopdownAffine', input_size=input_size),
]
train_dataloader = dict(
    batch_size=1,
    dataset=dict(num_queries_per_episode=1, episodes_per_epoch=20, pipeline=pipeline, **debug))
_val = dict(
    batch_size=1,
    dataset=dict(
        ann_file='annotations/mp100_split1_train.json',
        split_key='train',
        num_queries_per_episode=1,
        pipeline=pipeline,
        **debug))
val_dataloader = _val
test_dataloader = _val

train_cfg = dict(max_epochs=20, val_interval=1)
optim_wrapper = dict(optimizer=dict(lr=1e-3, weight_decay=0.0))
param_scheduler = []
default_hooks = dict(
    logger=dict(interval=20), checkpoint=dict(interval=20, save_best=None, max_keep_ckpts=1))

# MP-100 episodes for CAPE (split 1, 1-shot). Keypoint lists and skeletons are per
# category and come from the annotation files, so there is no metainfo dict here.
# Layout: data/mp100/{images/<category>/*.jpg, annotations/mp100_split{1..5}_*.json}.
# Protocol: val 100 episodes x 15 queries per category, test 200 x 15; PCK@0.2.
dataset_type = 'MP100EpisodicDataset'
data_root = 'data/mp100/'
input_size = (256, 256)

train_pipeline = [
    dict(type='LoadImage'),
    dict(type='GetBBoxCenterScale', padding=1.25),
    # no index swap on flips: support and query share the keypoint order
    dict(type='RandomFlip', direction='horizontal'),
    dict(type='RandomBBoxTransform', shift_factor=0.1, scale_factor=(0.8, 1.2), rotate_factor=15),
    dict(type='TopdownAffine', input_size=input_size),
]
val_pipeline = [
    dict(type='LoadImage'),
    dict(type='GetBBoxCenterScale', padding=1.25),
    dict(type='TopdownAffine', input_size=input_size),
]

train_dataloader = dict(
    batch_size=8,
    num_workers=4,
    persistent_workers=True,
    # EpisodicSampler passes the epoch to the workers inside each index
    sampler=dict(type='EpisodicSampler'),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='annotations/mp100_split1_train.json',
        data_prefix=dict(img='images/'),
        num_shots=1,
        num_queries_per_episode=1,
        episodes_per_epoch=10000,
        seed=0,  # episodes are drawn from (seed, epoch, index)
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=16,
    num_workers=2,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False, round_up=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='annotations/mp100_split1_val.json',
        data_prefix=dict(img='images/'),
        num_shots=1,
        num_queries_per_episode=15,
        episodes_per_category=100,
        seed=0,  # the fixed episodes are drawn from (seed, category, episode)
        test_mode=True,
        pipeline=val_pipeline))
# MP-100 protocol: 200 episodes x 15 queries per test category (100 for val).
test_dataloader = dict(
    val_dataloader,
    dataset=dict(
        val_dataloader['dataset'],
        ann_file='annotations/mp100_split1_test.json',
        episodes_per_category=200))
val_evaluator = dict(type='EpisodicPCKMetric')
test_evaluator = val_evaluator

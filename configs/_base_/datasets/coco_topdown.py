# COCO-2017 person keypoints, top-down (one ground-truth person box per sample).
# Layout: data/coco/annotations/person_keypoints_{train,val}2017.json and
# data/coco/images/{train2017,val2017}/ (tools/download_coco.py). Pipelines depend on
# the codec, so the model config fills them in. Validation uses ground-truth boxes;
# for detected boxes set val_dataloader.dataset.bbox_file=<detections.json>.
# Moving the data: override data_root in the dataloaders and val_evaluator.ann_file.
dataset_type = 'CheckedCocoDataset'  # mmpose's CocoDataset + clear missing-file errors
data_root = 'data/coco/'
train_dataloader = dict(
    batch_size=32,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_mode='topdown',
        ann_file='annotations/person_keypoints_train2017.json',
        data_prefix=dict(img='images/train2017/'),
        pipeline=[]))
val_dataloader = dict(
    batch_size=8,
    num_workers=2,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False, round_up=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_mode='topdown',
        ann_file='annotations/person_keypoints_val2017.json',
        data_prefix=dict(img='images/val2017/'),
        test_mode=True,
        pipeline=[]))
test_dataloader = val_dataloader
# mmpose's CocoMetric (xtcocotools/pycocotools OKS): coco/AP, AP .5, AP .75, AR ...
val_evaluator = dict(
    type='CocoMetric', ann_file=data_root + 'annotations/person_keypoints_val2017.json')
test_evaluator = val_evaluator
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

# Seed 000's schedule: Adam at a constant 1e-4 for 1000 epochs (no lr decay).
train_cfg = dict(type='KeyposeEpochBasedTrainLoop', max_epochs=1000, val_interval=50)
val_cfg = dict()
test_cfg = dict()
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='Adam', lr=1e-4))
param_scheduler = []
# lr was chosen for batch 16; `tools/train.py --auto-scale-lr` rescales it.
auto_scale_lr = dict(base_batch_size=16)

# Shared runtime for every keypose_ext config.
default_scope = 'mmpose'
# keypose_ext's Runner (checkpoint loading, lr scaling with accumulation, CPU DDP); the
# scope prefix lets mmengine's RUNNERS.build (e.g. mmpose's own tools/train.py) find it.
runner_type = 'mmpose.KeyposeRunner'
custom_imports = dict(imports=['keypose_ext'], allow_failed_imports=False)

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50),
    param_scheduler=dict(type='ParamSchedulerHook'),
    # mmengine's CheckpointHook made kill-safe: atomic files, new before old is deleted,
    # one run per work dir, never a NaN "best" (keypose_ext/engine/hooks/).
    checkpoint=dict(type='KeyposeCheckpointHook', interval=10, max_keep_ckpts=3, save_last=True),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='PoseVisualizationHook', enable=False),
    # a NaN/inf loss stops training before the optimizer step (action='skip' skips it)
    non_finite_loss=dict(type='NonFiniteLossHook', action='stop'),
)

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'),
)

vis_backends = [dict(type='LocalVisBackend')]
# mmpose's PoseLocalVisualizer, fixed for numpy 2 (keypose_ext/visualization/).
visualizer = dict(type='KeyposeLocalVisualizer', vis_backends=vis_backends, name='visualizer')

log_processor = dict(type='LogProcessor', window_size=50, by_epoch=True, num_digits=6)
log_level = 'INFO'
load_from = None
resume = False
# Every config is seeded; override with `--cfg-options randomness.seed=N`.
randomness = dict(seed=0)
backend_args = dict(backend='local')
# train_cfg / val_cfg / test_cfg live in the schedule files (mmengine forbids a key
# in two bases).

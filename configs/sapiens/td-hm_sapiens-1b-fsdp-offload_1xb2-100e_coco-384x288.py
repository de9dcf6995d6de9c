# Phase 2 of stage1_gtx1650.py with route 'full': every parameter of Sapiens-1B trains,
# its fp32 master weights, gradients and AdamW state offloaded to host memory by PyTorch
# FSDP (MMEngine's FlexibleRunner + FSDPStrategy, one process). The GPU holds about two
# blocks' fp16 weights at a time and the checkpointed activations (~1 GiB at batch 2);
# the host needs ~17 GiB for weights + grads + AdamW (16 B/param) plus the process and
# data workers: a 32 GB machine. The AdamW step runs on the CPU (once per 16 iterations).
#
# A separate run after phase 1, since FSDP fixes the trained parameters when it wraps:
#   python tools/train.py configs/sapiens/stage1_gtx1650.py --cfg-options train_cfg.max_epochs=10
#   tools/dist_train.sh configs/sapiens/td-hm_sapiens-1b-fsdp-offload_1xb2-100e_coco-384x288.py 1 \
#       --cfg-options load_from=work_dirs/stage1_gtx1650/epoch_10_merged.pth
# (the *_merged.pth copy: plain weights and meta, which MMEngine's FlexibleRunner loads
# under torch.load(weights_only=True)). Epochs 0-99 of this run are epochs 10-109 of the
# two-phase schedule. Its checkpoints are plain full state dicts (rank 0, gathered on the
# CPU): tools/test.py loads them with stage1_gtx1650.py (init_model under
# mmengine_checkpoint_globals(), as any training checkpoint). docs/sapiens.md: the CPU test.
_base_ = ['./stage1_gtx1650.py']

runner_type = 'FlexibleRunner'
strategy = dict(
    type='FSDPStrategy',
    model_wrapper=dict(
        type='MMFullyShardedDataParallel',
        cpu_offload=True,  # CPUOffload(offload_params=True): params and grads on the host
        # one FSDP unit per transformer block: a Sapiens-1B block has 28 M parameters,
        # its MLP alone 19 M (another arch: a value between its MLP and block sizes)
        auto_wrap_policy=dict(
            type='torch.distributed.fsdp.wrap.size_based_auto_wrap_policy',
            min_num_params=int(2e7)),
        mixed_precision=dict(param_dtype='float16', reduce_dtype='float32', buffer_dtype='float32'),
        use_orig_params=True),
    state_dict_cfg=dict(
        state_dict_type='FULL_STATE_DICT',
        state_dict_config=dict(type='FullStateDictConfig', offload_to_cpu=True, rank0_only=True),
        optim_state_dict_config=dict(
            type='FullOptimStateDictConfig', offload_to_cpu=True, rank0_only=True)))

model = dict(
    backbone=dict(
        checkpoint=None,  # all weights come from load_from (the phase-1 run)
        trainable_layers=-1,
        frozen_dtype=None,
        lora=None,
        with_cp=True))
custom_hooks = [
    dict(
        type='SapiensPhaseSwitchHook',
        switch_epoch=0,
        frozen_modules=['backbone'],
        phase2=dict(mode='full', with_cp=True)),
]
optim_wrapper = dict(
    use_fsdp=True,  # ShardedGradScaler: unscales the CPU-offloaded fp16 gradients
    optimizer=dict(fused=False))  # the step runs on the host's fp32 master weights
train_cfg = dict(max_epochs=100, val_interval=5)
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=1e-3,
        by_epoch=True,
        begin=0,
        end=1,
        convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        by_epoch=True,
        begin=0,
        end=100,
        T_max=100,
        eta_min_ratio=1e-2,
        convert_to_iter_based=True),
]

# stage1_gtx1650.py with phase-2 route 'last_blocks': blocks 0-37 stay frozen in fp16,
# the last 2 blocks + final norm (56.7 M parameters) train in fp32 with activation
# checkpointing and layer-wise lr decay; no adapters. Fits 4 GB at batch 2 (python
# tools/check_env.py --config <this file>); 3 blocks do not.
_base_ = ['./stage1_gtx1650.py']

model = dict(backbone=dict(lora=None))
custom_hooks = [
    dict(
        type='SapiensPhaseSwitchHook',
        switch_epoch=10,
        frozen_modules=['backbone'],
        phase2=dict(mode='last_blocks', trainable_layers=2, with_cp=True)),
]

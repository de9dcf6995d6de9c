# Another backbone by inheritance: ResNet-18 instead of ResNet-50 (split 1, 1-shot).
_base_ = ['./capeseq_res50_1xb8-200e_mp100-split1-1shot-256x256.py']
model = dict(
    backbone=dict(depth=18, init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet18')),
    head=dict(in_channels=512))

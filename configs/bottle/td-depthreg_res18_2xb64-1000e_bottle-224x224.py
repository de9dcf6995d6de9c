# Seed 000's "dual RTX 4090" plan with DDP instead of DataParallel:
#   tools/dist_train.sh configs/bottle/td-depthreg_res18_2xb64-1000e_bottle-224x224.py 2
# 2 GPUs x 64 = total batch 128. lr is kept at the seed's 1e-4 (add --auto-scale-lr
# for the linear rule: 1e-4 x 128 / 16). Rank 0 decodes the video into the shared
# frame cache once; the other rank and all workers read it.
_base_ = ['./td-depthreg_res18_1xb16-1000e_bottle-224x224.py']

train_dataloader = dict(batch_size=64)
val_dataloader = dict(batch_size=64)
test_dataloader = val_dataloader
env_cfg = dict(cudnn_benchmark=True)

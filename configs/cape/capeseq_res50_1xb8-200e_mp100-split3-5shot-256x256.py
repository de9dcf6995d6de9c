# MP-100 split 3, 5-shot (PCK@0.2 on 20 unseen test categories).
_base_ = ['./_base_/capeseq_res50_mp100-256x256.py']
split, shots = 3, 5
train_dataloader = dict(
    dataset=dict(ann_file=f'annotations/mp100_split{split}_train.json', num_shots=shots))
val_dataloader = dict(
    dataset=dict(ann_file=f'annotations/mp100_split{split}_val.json', num_shots=shots))
test_dataloader = dict(
    dataset=dict(ann_file=f'annotations/mp100_split{split}_test.json', num_shots=shots))

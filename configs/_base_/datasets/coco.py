# COCO-2017 person keypoints (17), in mmpose's `dataset_info` format. mmpose's
# CocoDataset reads `configs/_base_/datasets/coco.py` relative to the working
# directory (falling back to its packaged copy), so this file must keep that format;
# tests check it parses to the same metainfo as mmpose's own copy.
_names = ['nose', 'left_eye', 'right_eye', 'left_ear', 'right_ear', 'left_shoulder',
          'right_shoulder', 'left_elbow', 'right_elbow', 'left_wrist', 'right_wrist',
          'left_hip', 'right_hip', 'left_knee', 'right_knee', 'left_ankle', 'right_ankle']
_face, _left, _right = [51, 153, 255], [0, 255, 0], [255, 128, 0]
_links = [('left_ankle', 'left_knee', _left), ('left_knee', 'left_hip', _left),
          ('right_ankle', 'right_knee', _right), ('right_knee', 'right_hip', _right),
          ('left_hip', 'right_hip', _face), ('left_shoulder', 'left_hip', _face),
          ('right_shoulder', 'right_hip', _face), ('left_shoulder', 'right_shoulder', _face),
          ('left_shoulder', 'left_elbow', _left), ('right_shoulder', 'right_elbow', _right),
          ('left_elbow', 'left_wrist', _left), ('right_elbow', 'right_wrist', _right),
          ('left_eye', 'right_eye', _face), ('nose', 'left_eye', _face),
          ('nose', 'right_eye', _face), ('left_eye', 'left_ear', _face),
          ('right_eye', 'right_ear', _face), ('left_ear', 'left_shoulder', _face),
          ('right_ear', 'right_shoulder', _face)]
dataset_info = dict(
    dataset_name='coco',
    paper_info=dict(
        author='Lin, Tsung-Yi and Maire, Michael and Belongie, Serge and Hays, James '
        'and Perona, Pietro and Ramanan, Deva and Dollar, Piotr and Zitnick, C Lawrence',
        title='Microsoft coco: Common objects in context',
        container='European conference on computer vision',
        year='2014',
        homepage='http://cocodataset.org/'),
    keypoint_info={
        i: dict(name=n, id=i,
                color=_face if i < 5 else (_left if n.startswith('left') else _right),
                type='upper' if i < 11 else 'lower',
                swap=(n.replace('left', 'right') if n.startswith('left') else
                      n.replace('right', 'left') if n.startswith('right') else ''))
        for i, n in enumerate(_names)},
    skeleton_info={
        i: dict(link=(a, b), id=i, color=c) for i, (a, b, c) in enumerate(_links)},
    joint_weights=[1., 1., 1., 1., 1., 1., 1., 1.2, 1.2, 1.5, 1.5, 1., 1., 1.2, 1.2, 1.5,
                   1.5],
    sigmas=[0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072, 0.062, 0.062,
            0.107, 0.107, 0.087, 0.087, 0.089, 0.089])

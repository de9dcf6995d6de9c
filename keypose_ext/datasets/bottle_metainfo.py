"""Keypoint meta information of the bottle (Objectron box) dataset.

Nine keypoints in Objectron order: 0 is the box centre, 1..8 are the corners
of the object's 3D bounding box. Corner ``i`` sits at ``BOX_CORNER_SIGNS[i]``
(in units of half the box size) along the object's local x, y, z axes, which
is the order of Objectron's ``Object.keypoints`` template; in the names,
``n``/``p`` mean the negative/positive side of that axis. A box has no
left/right symmetry that survives a horizontal image flip, so
``flip_indices`` is the identity (no ``swap``).

``BottleVideoDataset.METAINFO`` is this dict, so configs need no ``metainfo``;
pass ``metainfo=dict(...)`` to a dataset only to override it.
"""

# (x, y, z) sign of each keypoint in the object's local frame; row 0 = centre.
BOX_CORNER_SIGNS = (
    (0, 0, 0),
    (-1, -1, -1), (-1, -1, 1), (-1, 1, -1), (-1, 1, 1),
    (1, -1, -1), (1, -1, 1), (1, 1, -1), (1, 1, 1),
)

# The 12 box edges as 0-based keypoint index pairs: 4 along x, 4 along y,
# 4 along z (corners differ in exactly one sign).
BOX_EDGES = (
    (1, 5), (2, 6), (3, 7), (4, 8),
    (1, 3), (2, 4), (5, 7), (6, 8),
    (1, 2), (3, 4), (5, 6), (7, 8),
)

BOTTLE_METAINFO = dict(
    dataset_name='bottle',
    paper_info=dict(
        author='Ahmadyan, Adel and Zhang, Liangkai and Ablavatski, Artsiom '
        'and Wei, Jianing and Grundmann, Matthias',
        title='Objectron: A Large Scale Dataset of Object-Centric Videos in '
        'the Wild with Pose Annotations',
        container='CVPR',
        year='2021',
        homepage='https://github.com/google-research-datasets/Objectron',
    ),
    keypoint_info={
        0: dict(name='center', id=0, color=[255, 255, 255], type='', swap=''),
        1: dict(name='corner_nnn', id=1, color=[255, 64, 64], type='', swap=''),
        2: dict(name='corner_nnp', id=2, color=[255, 160, 64], type='', swap=''),
        3: dict(name='corner_npn', id=3, color=[255, 255, 64], type='', swap=''),
        4: dict(name='corner_npp', id=4, color=[160, 255, 64], type='', swap=''),
        5: dict(name='corner_pnn', id=5, color=[64, 255, 160], type='', swap=''),
        6: dict(name='corner_pnp', id=6, color=[64, 255, 255], type='', swap=''),
        7: dict(name='corner_ppn', id=7, color=[64, 160, 255], type='', swap=''),
        8: dict(name='corner_ppp', id=8, color=[160, 64, 255], type='', swap=''),
    },
    # Edges coloured by the local axis they run along: x red, y green, z blue.
    skeleton_info={
        0: dict(link=('corner_nnn', 'corner_pnn'), id=0, color=[255, 0, 0]),
        1: dict(link=('corner_nnp', 'corner_pnp'), id=1, color=[255, 0, 0]),
        2: dict(link=('corner_npn', 'corner_ppn'), id=2, color=[255, 0, 0]),
        3: dict(link=('corner_npp', 'corner_ppp'), id=3, color=[255, 0, 0]),
        4: dict(link=('corner_nnn', 'corner_npn'), id=4, color=[0, 255, 0]),
        5: dict(link=('corner_nnp', 'corner_npp'), id=5, color=[0, 255, 0]),
        6: dict(link=('corner_pnn', 'corner_ppn'), id=6, color=[0, 255, 0]),
        7: dict(link=('corner_pnp', 'corner_ppp'), id=7, color=[0, 255, 0]),
        8: dict(link=('corner_nnn', 'corner_nnp'), id=8, color=[0, 0, 255]),
        9: dict(link=('corner_npn', 'corner_npp'), id=9, color=[0, 0, 255]),
        10: dict(link=('corner_pnn', 'corner_pnp'), id=10, color=[0, 0, 255]),
        11: dict(link=('corner_ppn', 'corner_ppp'), id=11, color=[0, 0, 255]),
    },
    joint_weights=[1.0] * 9,
    # OKS sigmas: corners are sharp, the centre is an interior point whose
    # annotation is less certain.
    sigmas=[0.1] + [0.05] * 8,
)

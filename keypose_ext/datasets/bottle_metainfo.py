"""Keypoint meta information of the bottle (Objectron box) dataset.

Everything here is derived from one table, :data:`BOX_CORNER_SIGNS`: keypoint
0 is the box centre, 1..8 are the corners of the object's 3D bounding box.
Corner ``i`` sits at ``BOX_CORNER_SIGNS[i]`` (in units of half the box size)
along the object's local x, y, z axes, which is the order of Objectron's
``Object.keypoints`` template; in the names, ``n``/``p`` mean the
negative/positive side of that axis. The 12 skeleton edges join corners that
differ in exactly one sign. A box has no left/right symmetry that survives a
horizontal image flip, so ``flip_indices`` is the identity (no ``swap``).

Use :data:`NUM_KEYPOINTS` wherever a keypoint count is needed (configs import
it: ``from keypose_ext.datasets.bottle_metainfo import NUM_KEYPOINTS``), so
the count is written in one place only.

``BottleVideoDataset.METAINFO`` is :data:`BOTTLE_METAINFO`, so configs need no
``metainfo``; pass ``metainfo=dict(...)`` to a dataset only to override it.
"""
from typing import List, Tuple

# (x, y, z) sign of each keypoint in the object's local frame; row 0 = centre.
# yapf: disable
BOX_CORNER_SIGNS: Tuple[Tuple[int, int, int], ...] = (
    (0, 0, 0),
    (-1, -1, -1), (-1, -1, 1), (-1, 1, -1), (-1, 1, 1),
    (1, -1, -1), (1, -1, 1), (1, 1, -1), (1, 1, 1),
)
# yapf: enable

NUM_KEYPOINTS = len(BOX_CORNER_SIGNS)
_AXIS_COLORS = ([255, 0, 0], [0, 255, 0], [0, 0, 255])  # x red, y green, z blue


def _keypoint_name(signs: Tuple[int, int, int]) -> str:
    if not any(signs):
        return 'center'
    return 'corner_' + ''.join('p' if s > 0 else 'n' for s in signs)


def _box_edges() -> List[Tuple[int, int, int]]:
    """``(a, b, axis)`` for corner pairs that differ along exactly one axis,
    grouped by axis (x, y, z) and ordered by ``a``."""
    edges = []
    for axis in range(3):
        for a in range(1, NUM_KEYPOINTS):
            for b in range(a + 1, NUM_KEYPOINTS):
                diff = [i for i in range(3) if BOX_CORNER_SIGNS[a][i] != BOX_CORNER_SIGNS[b][i]]
                if diff == [axis]:
                    edges.append((a, b, axis))
    return edges


KEYPOINT_NAMES: Tuple[str, ...] = tuple(_keypoint_name(s) for s in BOX_CORNER_SIGNS)

# The 12 box edges as 0-based keypoint index pairs: 4 along x, 4 along y,
# 4 along z.
BOX_EDGES: Tuple[Tuple[int, int], ...] = tuple((a, b) for a, b, _ in _box_edges())

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
    # Colour codes the corner's octant: +x adds red, +y green, +z blue.
    keypoint_info={
        i:
        dict(
            name=name,
            id=i,
            type='',
            swap='',
            color=[64 + 191 * (s > 0) for s in signs] if any(signs) else [255, 255, 255])
        for i, (name, signs) in enumerate(zip(KEYPOINT_NAMES, BOX_CORNER_SIGNS))
    },
    # Edges coloured by the local axis they run along.
    skeleton_info={
        i: dict(link=(KEYPOINT_NAMES[a], KEYPOINT_NAMES[b]), id=i, color=list(_AXIS_COLORS[axis]))
        for i, (a, b, axis) in enumerate(_box_edges())
    },
    joint_weights=[1.0] * NUM_KEYPOINTS,
    # OKS sigmas: corners are sharp, the centre is an interior point whose
    # annotation is less certain.
    sigmas=[0.1] + [0.05] * (NUM_KEYPOINTS - 1),
)

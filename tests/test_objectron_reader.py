"""Objectron annotation.pbdata reader on clips laid out as real Objectron clips.

Real clips have portrait frames (here 72 x 96) and landscape cameras (resolution
96 x 72, intrinsics with (fx, cx) and (fy, cy) swapped, point_3d x down / y right):
keypose_ext.testing.synthetic_objectron writes them that way from a rendered video
whose OpenCV ground truth is known exactly.
"""
import numpy as np
import pytest

from keypose_ext.objectron import annotation_data_pb2 as pb
from keypose_ext.objectron import (load_objectron_sequence, read_objectron_annotations,
                                   read_objectron_clip)
from keypose_ext.objectron.box3d import project_points
from keypose_ext.objectron.reader import fit_orientation
from keypose_ext.testing.synthetic_objectron import write_objectron_clip

W, H = 72, 96  # portrait frames


@pytest.fixture(scope='module')
def portrait(tmp_path_factory):
    return write_objectron_clip(
        str(tmp_path_factory.mktemp('portrait')),
        num_frames=4,
        size=(W, H),
        seed=3,
        empty_frames=[2])


@pytest.fixture(scope='module')
def landscape(tmp_path_factory):
    return write_objectron_clip(
        str(tmp_path_factory.mktemp('landscape')),
        num_frames=3,
        size=(W, H),
        seed=4,
        orientation='landscape')


def _intrinsics(camera):
    return np.array([[camera.fx, 0, camera.cx], [0, camera.fy, camera.cy], [0, 0, 1]])


def test_fixture_is_laid_out_like_objectron(portrait):
    seq = load_objectron_sequence(portrait['annotation'])
    cam = seq.frame_annotations[0].camera
    assert (cam.image_resolution_width, cam.image_resolution_height) == (H, W)  # landscape
    k = np.asarray(cam.intrinsics).reshape(3, 3)
    truth = portrait['ground_truth']['camera']
    assert (k[0, 2], k[1, 2]) == pytest.approx((truth.cy, truth.cx))  # swapped principal pt
    # point_3d's x runs down the portrait frame: it tracks the pixel row, not the column.
    kp = seq.frame_annotations[0].annotations[0].keypoints
    x3, v = [k.point_3d.x / -k.point_3d.z for k in kp], [k.point_2d.y for k in kp]
    assert np.corrcoef(x3, v)[0, 1] > 0.99


def test_portrait_clip_3d_points_are_the_frames_opencv_points(portrait):
    clip = read_objectron_clip(portrait['annotation'])
    assert clip.orientation == 'portrait'
    truth = portrait['ground_truth']
    for frame, gt in zip(clip.frames, truth['frames']):
        if frame.frame_id == 2:
            continue
        inst = frame.instances[0]
        np.testing.assert_allclose(inst.keypoints_3d, gt['keypoints_3d'], atol=1e-6)
        np.testing.assert_allclose(inst.keypoints, gt['keypoints'], atol=1e-4)
        np.testing.assert_allclose(inst.depth, gt['depth'], atol=1e-6)
        np.testing.assert_allclose(frame.intrinsics, _intrinsics(truth['camera']), atol=1e-5)
        np.testing.assert_allclose(
            project_points(inst.keypoints_3d, frame.intrinsics), inst.keypoints, atol=1e-3)


def test_old_arkit_conversion_is_rotated_90_degrees_on_portrait_clips(portrait):
    """What the reader did before: (x, -y, -z). On a portrait clip that puts the
    frame's rows on the x axis: the box comes out turned by 90 degrees."""
    seq = load_objectron_sequence(portrait['annotation'])
    raw = np.array([[k.point_3d.x, k.point_3d.y, k.point_3d.z]
                    for k in seq.frame_annotations[0].annotations[0].keypoints])
    old = raw * [1, -1, -1]
    truth = portrait['ground_truth']['frames'][0]['keypoints_3d']
    assert np.abs(old - truth).max() > 0.05
    turned = np.stack([-old[:, 1], old[:, 0], old[:, 2]], axis=1)  # 90 degrees about z
    np.testing.assert_allclose(turned, truth, atol=1e-6)


def test_image_size_defaults_to_the_portrait_frame(portrait):
    clip = read_objectron_clip(portrait['annotation'])
    assert clip.frames[0].image_size == (W, H)
    frames = read_objectron_annotations(portrait['annotation'])
    assert frames[0].image_size == (W, H)
    np.testing.assert_allclose(frames[0].keypoints, frames[0].keypoints_pixels(W, H))


def test_given_image_size_scales_pixels_and_intrinsics(portrait):
    clip = read_objectron_clip(portrait['annotation'], image_size=(2 * W, 2 * H))
    frame = clip.frames[0]
    inst = frame.instances[0]
    np.testing.assert_allclose(
        frame.intrinsics[:2], 2 * _intrinsics(portrait['ground_truth']['camera'])[:2], atol=1e-4)
    np.testing.assert_allclose(
        project_points(inst.keypoints_3d, frame.intrinsics), inst.keypoints, atol=1e-3)


def test_frames_without_the_object_are_allowed(portrait):
    clip = read_objectron_clip(portrait['annotation'])
    assert [len(f.instances) for f in clip.frames] == [1, 1, 0, 1]
    assert [f.frame_id for f in read_objectron_annotations(portrait['annotation'])] == [0, 1, 3]


def test_landscape_clip_keeps_the_arkit_conversion(landscape):
    clip = read_objectron_clip(landscape['annotation'])
    assert clip.orientation == 'landscape'
    assert clip.frames[0].image_size == (W, H)
    gt = landscape['ground_truth']['frames'][1]
    np.testing.assert_allclose(
        clip.frames[1].instances[0].keypoints_3d, gt['keypoints_3d'], atol=1e-6)


def test_forced_wrong_orientation_breaks_the_projection(portrait):
    clip = read_objectron_clip(portrait['annotation'], orientation='landscape')
    frame, inst = clip.frames[0], clip.frames[0].instances[0]
    assert frame.image_size == (H, W)
    assert np.abs(project_points(inst.keypoints_3d, frame.intrinsics) - inst.keypoints).max() > 5
    rms = fit_orientation(
        np.concatenate([
            np.array([[k.point_3d.x, k.point_3d.y, k.point_3d.z] for k in a.keypoints])
            for f in load_objectron_sequence(portrait['annotation']).frame_annotations
            for a in f.annotations
        ]), np.concatenate([i.keypoints_norm for f in clip.frames for i in f.instances]))
    assert rms['portrait'] < 1e-5 < 1e-2 < rms['landscape']


def test_without_point_3d_the_aspect_ratio_decides(tmp_path, portrait):
    seq = load_objectron_sequence(portrait['annotation'])
    for frame in seq.frame_annotations:
        for ann in frame.annotations:
            for kp in ann.keypoints:
                kp.ClearField('point_3d')
    path = tmp_path / 'no3d.pbdata'
    path.write_bytes(seq.SerializeToString())
    assert read_objectron_clip(str(path)).orientation == 'portrait'
    assert read_objectron_clip(str(path), image_size=(W, H)).orientation == 'portrait'
    assert read_objectron_clip(str(path), image_size=(H, W)).orientation == 'landscape'
    assert read_objectron_clip(str(path)).frames[0].instances[0].keypoints_3d is None


def test_missing_intrinsics_read_as_none(tmp_path):
    clip = write_objectron_clip(str(tmp_path), num_frames=2, size=(W, H), with_intrinsics=False)
    assert read_objectron_clip(clip['annotation']).frames[0].intrinsics is None


def test_two_objects(tmp_path):
    clip = write_objectron_clip(
        str(tmp_path), num_frames=2, size=(W, H), second_object_offset=(0.1, 0, 0))
    seq = read_objectron_clip(clip['annotation'])
    assert seq.object_ids == [0, 1]
    assert [i.object_id for i in seq.frames[0].instances] == [0, 1]
    first = read_objectron_annotations(clip['annotation'])
    second = read_objectron_annotations(clip['annotation'], object_id=1)
    np.testing.assert_allclose(
        second[0].keypoints_3d - first[0].keypoints_3d, np.tile([0.1, 0, 0], (9, 1)), atol=1e-6)


def _varint(n):
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def _field(number, payload):
    """A length-delimited protobuf field."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def test_unknown_fields_of_the_full_schema_are_skipped(tmp_path, portrait):
    """Real files carry ARCamera fields this subset leaves out (tracking
    state = field 1, euler angles = field 4): they must parse."""
    seq = load_objectron_sequence(portrait['annotation'])
    del seq.frame_annotations[1:]
    frame = seq.frame_annotations[0]
    camera = frame.camera.SerializeToString()
    frame.ClearField('camera')
    euler = b'\x0d\x00\x00\x80\x3f'  # EulerAngles.roll = 1.0
    camera = b'\x08\x03' + _field(4, euler) + camera
    frame_bytes = frame.SerializeToString() + _field(3, camera)
    payload = b''.join(_field(1, o.SerializeToString()) for o in seq.objects)
    payload += _field(2, frame_bytes)
    path = tmp_path / 'full.pbdata'
    path.write_bytes(payload)
    frames = read_objectron_annotations(str(path))
    assert frames[0].image_size == (W, H)
    assert frames[0].keypoints.shape == (9, 2)
    parsed = load_objectron_sequence(str(path))
    assert b'\x08\x03' in parsed.frame_annotations[0].camera.SerializeToString()


def _mutated(tmp_path, portrait, edit, name='bad.pbdata'):
    seq = load_objectron_sequence(portrait['annotation'])
    edit(seq)
    path = tmp_path / name
    path.write_bytes(seq.SerializeToString())
    return str(path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match='nope.pbdata'):
        load_objectron_sequence(str(tmp_path / 'nope.pbdata'))


def test_garbage_file_names_the_file(tmp_path):
    path = tmp_path / 'garbage.pbdata'
    path.write_bytes(b'\xff\xff\xff\xff not a protobuf')
    with pytest.raises(ValueError, match='garbage.pbdata'):
        read_objectron_annotations(str(path))


def test_eight_keypoints_name_frame_and_expected_nine(tmp_path, portrait):
    path = _mutated(tmp_path, portrait,
                    lambda s: s.frame_annotations[0].annotations[0].keypoints.pop())
    with pytest.raises(ValueError, match=r'frame_id 0.*8 keypoints.*9'):
        read_objectron_annotations(path)


def test_nan_depth_is_rejected(tmp_path, portrait):

    def edit(seq):
        seq.frame_annotations[1].annotations[0].keypoints[3].point_2d.depth = float('nan')

    with pytest.raises(ValueError, match='frame_id 1.*NaN'):
        read_objectron_annotations(_mutated(tmp_path, portrait, edit))


def test_unknown_object_id(tmp_path, portrait):
    with pytest.raises(ValueError, match=r'object id 3 .*\[0\]'):
        read_objectron_annotations(portrait['annotation'], object_id=3)


def test_bad_orientation_value(portrait):
    with pytest.raises(ValueError, match='orientation must be one of'):
        read_objectron_clip(portrait['annotation'], orientation='upside-down')


def test_proto_module_parses():
    """The generated module's descriptor matches the .proto (a rename once broke it)."""
    assert pb.Sequence.DESCRIPTOR.full_name == 'keypose_ext.objectron.Sequence'
    assert pb.DESCRIPTOR.name == 'keypose_ext/objectron/annotation_data.proto'

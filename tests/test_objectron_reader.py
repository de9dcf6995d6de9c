"""Objectron annotation.pbdata reader (own .proto, wire-compatible subset)."""
import numpy as np
import pytest

from keypose_ext.objectron import annotation_data_pb2 as pb
from keypose_ext.objectron import (load_objectron_sequence,
                                            read_objectron_annotations)


def _sequence(num_frames=2, num_kpts=9, shuffle=True, depth_value=None):
    """A Sequence with one box whose keypoint k in frame f sits at
    normalised (0.1 k + 0.01 f, 0.05 k), depth 1 + 0.1 k, and ARKit point
    (k, 2k, -(1 + 0.1 k))."""
    seq = pb.Sequence()
    obj = seq.objects.add()
    obj.id = 7
    obj.category = 'bottle'
    obj.type = pb.Object.BOUNDING_BOX
    for f in range(num_frames):
        frame = seq.frame_annotations.add()
        frame.frame_id = f
        frame.camera.image_resolution_width = 200
        frame.camera.image_resolution_height = 100
        ann = frame.annotations.add()
        ann.object_id = 7
        ann.visibility = 0.5
        order = list(range(num_kpts))
        if shuffle:
            order = order[::-1]  # the reader must sort by keypoint id
        for k in order:
            kp = ann.keypoints.add()
            kp.id = k
            kp.point_2d.x = 0.1 * k + 0.01 * f
            kp.point_2d.y = 0.05 * k
            kp.point_2d.depth = 1 + 0.1 * k if depth_value is None \
                else depth_value
            kp.point_3d.x, kp.point_3d.y, kp.point_3d.z = k, 2 * k, -(1 +
                                                                      0.1 * k)
    return seq


def _write(tmp_path, seq, name='annotation.pbdata'):
    path = tmp_path / name
    path.write_bytes(seq.SerializeToString())
    return str(path)


def test_reads_pixels_depth_and_opencv_3d_points(tmp_path):
    path = _write(tmp_path, _sequence())
    frames = read_objectron_annotations(path, image_size=(640, 480))
    assert [f.frame_id for f in frames] == [0, 1]
    k = np.arange(9)
    f1 = frames[1]
    np.testing.assert_allclose(f1.keypoints_norm[:, 0], 0.1 * k + 0.01,
                               atol=1e-6)
    np.testing.assert_allclose(f1.keypoints[:, 0], (0.1 * k + 0.01) * 640,
                               atol=1e-4)
    np.testing.assert_allclose(f1.keypoints[:, 1], 0.05 * k * 480, atol=1e-4)
    np.testing.assert_allclose(f1.depth, 1 + 0.1 * k, atol=1e-6)
    # ARKit (y up, -z forward) -> OpenCV (y down, +z forward): z == depth.
    np.testing.assert_allclose(f1.keypoints_3d[:, 1], -2 * k, atol=1e-6)
    np.testing.assert_allclose(f1.keypoints_3d[:, 2], f1.depth, atol=1e-6)
    assert f1.visibility == pytest.approx(0.5)


def test_image_size_defaults_to_camera_resolution(tmp_path):
    frames = read_objectron_annotations(_write(tmp_path, _sequence()))
    assert frames[0].image_size == (200, 100)
    np.testing.assert_allclose(frames[0].keypoints,
                               frames[0].keypoints_pixels(200, 100))


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


def test_unknown_fields_of_the_full_schema_are_skipped(tmp_path):
    """Real files carry ARCamera fields this subset leaves out (tracking
    state = field 1, euler angles = field 4): they must parse."""
    seq = _sequence(num_frames=1)
    frame = seq.frame_annotations[0]
    camera = frame.camera.SerializeToString()
    frame.ClearField('camera')
    euler = b'\x0d\x00\x00\x80\x3f'  # EulerAngles.roll = 1.0
    camera = b'\x08\x03' + _field(4, euler) + camera
    frame_bytes = frame.SerializeToString() + _field(3, camera)
    payload = b''.join(
        _field(1, o.SerializeToString()) for o in seq.objects)
    payload += _field(2, frame_bytes)
    path = tmp_path / 'full.pbdata'
    path.write_bytes(payload)
    frames = read_objectron_annotations(str(path))
    assert frames[0].image_size == (200, 100)
    assert frames[0].keypoints.shape == (9, 2)
    # The extra fields really were in the payload and are kept as unknown.
    parsed = load_objectron_sequence(str(path))
    assert parsed.frame_annotations[0].camera.SerializeToString() != \
        pb.ARCamera(image_resolution_width=200,
                    image_resolution_height=100).SerializeToString()


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match='nope.pbdata'):
        load_objectron_sequence(str(tmp_path / 'nope.pbdata'))


def test_garbage_file_names_the_file(tmp_path):
    path = tmp_path / 'garbage.pbdata'
    path.write_bytes(b'\xff\xff\xff\xff not a protobuf')
    with pytest.raises(ValueError, match='garbage.pbdata'):
        read_objectron_annotations(str(path))


def test_eight_keypoints_name_frame_and_expected_nine(tmp_path):
    path = _write(tmp_path, _sequence(num_kpts=8))
    with pytest.raises(ValueError, match=r'frame_id 0.*8 keypoints.*9'):
        read_objectron_annotations(path)


def test_nan_depth_is_rejected(tmp_path):
    path = _write(tmp_path, _sequence(depth_value=float('nan')))
    with pytest.raises(ValueError, match='frame_id 0.*NaN'):
        read_objectron_annotations(path)


def test_frame_without_the_object(tmp_path):
    seq = _sequence()
    seq.frame_annotations[1].ClearField('annotations')
    with pytest.raises(ValueError, match='frame_id 1 has no annotation'):
        read_objectron_annotations(_write(tmp_path, seq))


def test_unknown_object_id(tmp_path):
    with pytest.raises(ValueError, match=r'object id 3 .*\[7\]'):
        read_objectron_annotations(
            _write(tmp_path, _sequence()), object_id=3)

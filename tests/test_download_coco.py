import hashlib
import importlib.util
import json
import os
import os.path as osp
import zipfile

import pytest
from sapiens_test_utils import ROOT, RangeHTTPServer, closed_port_url

from keypose_ext.utils.sapiens_download import safe_extract_zip


def _tool():
    spec = importlib.util.spec_from_file_location('download_coco',
                                                  osp.join(ROOT, 'tools', 'download_coco.py'))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _zip(path, members):
    os.makedirs(osp.dirname(path), exist_ok=True)
    with zipfile.ZipFile(path, 'w', zipfile.ZIP_STORED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)


@pytest.fixture
def mirror(tmp_path):
    """COCO's URL layout with small archives and a manifest describing them."""
    srv_root = tmp_path / 'server'
    jpg = b'\xff\xd8\xff' + os.urandom(3000)  # the tool counts *.jpg, never decodes
    _zip(srv_root / 'zips/val2017.zip', {f'val2017/{i:012d}.jpg': jpg for i in range(5)})
    _zip(srv_root / 'zips/train2017.zip', {f'train2017/{i:012d}.jpg': jpg for i in range(100, 107)})
    _zip(srv_root / 'annotations/annotations_trainval2017.zip',
         {f'annotations/person_keypoints_{s}2017.json': b'{}'
          for s in ('train', 'val')})
    manifest = {}
    for part, rel, count in (('val', 'zips/val2017.zip', 5), ('train', 'zips/train2017.zip', 7),
                             ('annotations', 'annotations/annotations_trainval2017.zip', None)):
        data = (srv_root / rel).read_bytes()
        manifest[part] = dict(size=len(data), md5=hashlib.md5(data).hexdigest())
        if count:
            manifest[part]['count'] = count
    mpath = tmp_path / 'manifest.json'
    mpath.write_text(json.dumps(manifest))
    return srv_root, mpath, manifest


def test_download_resumes_checks_and_extracts(mirror, tmp_path, capsys):
    srv_root, mpath, _ = mirror
    tool = _tool()
    data_root = tmp_path / 'data' / 'coco'
    with RangeHTTPServer(srv_root) as srv:
        srv.truncate_once['/zips/train2017.zip'] = 4000  # connection drops mid-file
        args = ['--data-root', str(data_root), '--base-url', srv.url, '--manifest', str(mpath)]
        assert tool.main(args) == 1
        assert 'run the same command again to resume' in capsys.readouterr().err
        part = data_root / 'downloads' / 'train2017.zip.part'
        assert part.stat().st_size == 4000
        assert tool.main(args) == 0
        ranges = [r for m, p, r in srv.requests if p == '/zips/train2017.zip']
        assert ranges[-1] == 'bytes=4000-'  # resumed, not restarted
    out = capsys.readouterr().out
    assert 'COCO ready' in out and '7 images' in out and '5 images' in out
    assert len(os.listdir(data_root / 'images' / 'train2017')) == 7
    assert (data_root / 'annotations' / 'person_keypoints_val2017.json').is_file()
    assert not (data_root / 'downloads' / 'val2017.zip').exists()  # zips removed
    # a complete set is not downloaded again
    n = len(srv.requests)
    with RangeHTTPServer(srv_root) as srv2:
        assert tool.main(
            ['--data-root',
             str(data_root), '--base-url', srv2.url, '--manifest',
             str(mpath)]) == 0
        assert not srv2.requests
    assert 'already complete' in capsys.readouterr().out
    assert n > 0


def test_server_ignoring_range_restarts_cleanly(mirror, tmp_path):
    srv_root, mpath, _ = mirror
    tool = _tool()
    data_root = tmp_path / 'coco'
    (data_root / 'downloads').mkdir(parents=True)
    (data_root / 'downloads' / 'val2017.zip.part').write_bytes(b'garbage!' * 10)
    with RangeHTTPServer(srv_root) as srv:
        srv.ignore_range = True
        assert tool.main([
            '--data-root',
            str(data_root), '--base-url', srv.url, '--manifest',
            str(mpath), '--parts', 'val'
        ]) == 0
    assert len(os.listdir(data_root / 'images' / 'val2017')) == 5


def test_checksum_and_count_errors(mirror, tmp_path, capsys):
    srv_root, mpath, manifest = mirror
    tool = _tool()
    bad = dict(manifest)
    bad['val'] = dict(manifest['val'], md5='0' * 32)
    bad_path = tmp_path / 'bad.json'
    bad_path.write_text(json.dumps(bad))
    with RangeHTTPServer(srv_root) as srv:
        rc = tool.main([
            '--data-root',
            str(tmp_path / 'c1'), '--base-url', srv.url, '--manifest',
            str(bad_path), '--parts', 'val'
        ])
        assert rc == 1 and 'checksum mismatch' in capsys.readouterr().err
        assert not (tmp_path / 'c1' / 'downloads' / 'val2017.zip.part').exists()
        bad['val'] = dict(manifest['val'], count=5000)
        bad_path.write_text(json.dumps(bad))
        rc = tool.main([
            '--data-root',
            str(tmp_path / 'c2'), '--base-url', srv.url, '--manifest',
            str(bad_path), '--parts', 'val'
        ])
        assert rc == 1
        assert 'holds 5 images, expected 5000' in capsys.readouterr().err


def test_offline_message(tmp_path, capsys):
    rc = _tool().main(
        ['--data-root',
         str(tmp_path / 'c'), '--base-url',
         closed_port_url(), '--parts', 'val'])
    err = capsys.readouterr().err
    assert rc == 1 and 'offline' in err and 'val2017.zip' in err


def test_default_table_is_coco_2017():
    tool = _tool()
    assert tool.PARTS['train']['count'] == 118287 and tool.PARTS['val']['count'] == 5000
    assert tool.PARTS['val']['md5'] == '442b8da7639aecaf257c1dceb8ba8c80'
    assert tool.OFFICIAL_BASE_URL == 'http://images.cocodataset.org'


def test_zip_slip_is_refused(tmp_path):
    evil = tmp_path / 'evil.zip'
    _zip(evil, {'val2017/ok.jpg': b'1', '../outside.txt': b'x'})
    with pytest.raises(ValueError, match=r"unsafe member '\.\./outside\.txt'"):
        safe_extract_zip(str(evil), str(tmp_path / 'dest'))
    assert not (tmp_path / 'outside.txt').exists()
    assert not (tmp_path / 'dest' / 'val2017' / 'ok.jpg').exists()  # checked first
    absolute = tmp_path / 'abs.zip'
    _zip(absolute, {'/etc/passwd_copy': b'x'})
    with pytest.raises(ValueError, match='unsafe member'):
        safe_extract_zip(str(absolute), str(tmp_path / 'dest'))

import hashlib
import importlib.util
import os.path as osp

import torch
from sapiens_test_utils import ROOT, RangeHTTPServer, closed_port_url, make_tiny_trace

REPO = 'facebook/sapiens-pretrain-1b-torchscript'
NAME = 'sapiens_1b_epoch_173_torchscript.pt2'
URL_PATH = f'/{REPO}/resolve/main/{NAME}'


def _tool():
    spec = importlib.util.spec_from_file_location('download_pretrained',
                                                  osp.join(ROOT, 'tools', 'download_pretrained.py'))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _hub(tmp_path, payload_path=None):
    """The Hub's URL layout, with the X-Linked-* headers it sends for LFS files."""
    root = tmp_path / 'hub'
    target = root / URL_PATH.lstrip('/')
    target.parent.mkdir(parents=True)
    if payload_path is None:
        make_tiny_trace(target)
    else:
        target.write_bytes(open(payload_path, 'rb').read())
    data = target.read_bytes()
    headers = {
        'X-Linked-Size': str(len(data)),
        'X-Linked-Etag': f'"{hashlib.sha256(data).hexdigest()}"'
    }
    return root, headers


def test_downloads_checks_and_verifies_torchscript(tmp_path, capsys):
    root, headers = _hub(tmp_path)
    with RangeHTTPServer(root) as srv:
        srv.headers[URL_PATH] = headers
        rc = _tool().main(['--endpoint', srv.url, '--out-dir', str(tmp_path / 'pre')])
        assert ('HEAD', URL_PATH, None) in srv.requests
    out = capsys.readouterr().out
    dest = tmp_path / 'pre' / 'sapiens_1b' / NAME
    assert rc == 0 and dest.is_file()
    assert 'TorchScript' in out and 'sha256' in out
    assert isinstance(torch.jit.load(str(dest)), torch.jit.ScriptModule)


def test_wrong_sha256_is_rejected(tmp_path, capsys):
    root, headers = _hub(tmp_path)
    headers['X-Linked-Etag'] = '"' + 'a' * 64 + '"'
    with RangeHTTPServer(root) as srv:
        srv.headers[URL_PATH] = headers
        rc = _tool().main(['--endpoint', srv.url, '--out-dir', str(tmp_path / 'pre')])
    assert rc == 1 and 'checksum mismatch' in capsys.readouterr().err
    assert not (tmp_path / 'pre' / 'sapiens_1b' / NAME).exists()


def test_not_torchscript_and_missing_file(tmp_path, capsys):
    sd = tmp_path / 'sd.pth'
    torch.save({'w': torch.zeros(2)}, str(sd))
    root, headers = _hub(tmp_path, payload_path=sd)
    with RangeHTTPServer(root) as srv:
        srv.headers[URL_PATH] = headers
        rc = _tool().main(['--endpoint', srv.url, '--out-dir', str(tmp_path / 'pre')])
        assert rc == 1 and 'torch_save, not TorchScript' in capsys.readouterr().err
        rc = _tool().main(
            ['--endpoint', srv.url, '--out-dir',
             str(tmp_path / 'pre'), '--arch', '2b'])
        assert rc == 1 and 'HTTP 404' in capsys.readouterr().err


def test_offline_gives_manual_instructions(tmp_path, capsys):
    rc = _tool().main(['--endpoint', closed_port_url(), '--out-dir', str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 1
    assert 'offline' in err and f'https://huggingface.co/{REPO}' in err and NAME in err

"""Resumable HTTP downloads and safe zip extraction for the Sapiens/COCO tools.

Standard library + tqdm only (used by ``tools/download_coco.py`` and
``tools/download_pretrained.py``).
"""
import hashlib
import http.client
import os
import os.path as osp
import shutil
import stat
import urllib.error
import urllib.request
import zipfile
from typing import Dict, Optional

from tqdm import tqdm

from .errors import KeyposeUserError, UserValueError

CHUNK = 1 << 20
USER_AGENT = 'keypose_ext-downloader/0.1'


class DownloadError(KeyposeUserError, ConnectionError):
    """A download failed (offline, HTTP error, truncated or corrupt file); the message
    names the URL and what to do."""


def _request(url: str, headers: Optional[Dict[str, str]] = None, method: str = 'GET'):
    req = urllib.request.Request(
        url, method=method, headers={
            'User-Agent': USER_AGENT,
            **(headers or {})
        })
    return req


def file_digest(path: str, algo: str, desc: Optional[str] = None) -> str:
    h = hashlib.new(algo)
    size = osp.getsize(path)
    with open(path, 'rb') as f, tqdm(
            total=size,
            unit='B',
            unit_scale=True,
            desc=desc or f'{algo} {osp.basename(path)}',
            disable=size < 64 * CHUNK,
            leave=False) as bar:
        for block in iter(lambda: f.read(CHUNK), b''):
            h.update(block)
            bar.update(len(block))
    return h.hexdigest()


def _offline_message(url: str, err: Exception, hint: str) -> str:
    return (f'cannot download {url}: {err}. Are you offline or behind a proxy? '
            f'(urllib honours HTTPS_PROXY/HTTP_PROXY) {hint}').strip()


def download(url: str,
             dest: str,
             size: Optional[int] = None,
             md5: Optional[str] = None,
             sha256: Optional[str] = None,
             headers: Optional[Dict[str, str]] = None,
             timeout: float = 60.,
             offline_hint: str = '') -> str:
    """Download ``url`` to ``dest`` with resume, a progress bar and checks.

    Bytes go to ``dest + '.part'``; a later call continues from its length with an
    HTTP ``Range`` request (a server that ignores it makes the download restart).
    The finished file must have the server's length and, when given, ``size``,
    ``md5`` and ``sha256``; only then is it renamed to ``dest``. An existing
    ``dest`` of the right size (and checksum) is kept.

    Raises:
        DownloadError: network failure (with ``offline_hint``), HTTP error, or a
            size/checksum mismatch (the bad file is removed so a re-run starts over).
    """
    os.makedirs(osp.dirname(osp.abspath(dest)), exist_ok=True)
    if osp.isfile(dest) and (size is None or osp.getsize(dest) == size):
        if _checksums_ok(dest, md5, sha256):
            return dest
        os.remove(dest)
    part = dest + '.part'
    have = osp.getsize(part) if osp.isfile(part) else 0
    if size is not None and have > size:
        os.remove(part)
        have = 0
    if not (size is not None and have == size):
        hdrs = dict(headers or {})
        if have:
            hdrs['Range'] = f'bytes={have}-'
        try:
            resp = urllib.request.urlopen(_request(url, hdrs), timeout=timeout)
        except urllib.error.HTTPError as e:
            if e.code == 416 and have:  # range past the end: the .part is complete
                resp = None
            else:
                raise DownloadError(f'cannot download {url}: HTTP {e.code} {e.reason}. '
                                    f'{offline_hint}'.strip()) from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
            raise DownloadError(_offline_message(url, getattr(e, 'reason', e),
                                                 offline_hint)) from None
        if resp is not None:
            with resp:
                if have and resp.status != 206:
                    have = 0  # server ignored Range: start again
                length = resp.headers.get('Content-Length')
                total = have + int(length) if length is not None else None
                if size is not None and total is not None and total != size:
                    raise DownloadError(
                        f'{url} is {total} bytes, expected {size}: wrong URL or the file '
                        'changed upstream')
                mode = 'ab' if have else 'wb'
                try:
                    with open(part, mode) as f, tqdm(
                            total=total,
                            initial=have,
                            unit='B',
                            unit_scale=True,
                            unit_divisor=1024,
                            desc=osp.basename(dest)) as bar:
                        for block in iter(lambda: resp.read(CHUNK), b''):
                            f.write(block)
                            bar.update(len(block))
                except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
                    raise DownloadError(
                        f'download of {url} interrupted after '
                        f'{osp.getsize(part)} bytes ({e}); run the same command again '
                        'to resume') from None
                if total is not None and osp.getsize(part) != total:
                    raise DownloadError(
                        f'download of {url} stopped at {osp.getsize(part)} of {total} '
                        'bytes; run the same command again to resume')
    got = osp.getsize(part)
    if size is not None and got != size:
        raise DownloadError(f'{part} has {got} bytes, expected {size}; run again to resume')
    if not _checksums_ok(part, md5, sha256):
        os.remove(part)
        raise DownloadError(f'{url}: checksum mismatch (expected md5={md5} '
                            f'sha256={sha256}); the corrupt file was removed, run again')
    os.replace(part, dest)
    return dest


def _checksums_ok(path: str, md5: Optional[str], sha256: Optional[str]) -> bool:
    if md5 and file_digest(path, 'md5') != md5.lower():
        return False
    if sha256 and file_digest(path, 'sha256') != sha256.lower():
        return False
    return True


def safe_extract_zip(zip_path: str, dest_dir: str) -> int:
    """Extract a zip refusing absolute paths, ``..`` components and symlinks.

    Every member is checked before anything is written. Returns the number of files.

    Raises:
        UserValueError: an unsafe member (named in the message) or a corrupt archive.
    """
    dest_root = osp.realpath(dest_dir)
    try:
        zf = zipfile.ZipFile(zip_path)
    except zipfile.BadZipFile as e:
        raise UserValueError(f'{zip_path}: not a readable zip archive ({e}); delete it and '
                             'download it again') from None
    with zf:
        members = zf.infolist()
        for m in members:
            name = m.filename.replace('\\', '/')
            parts = name.split('/')
            target = osp.realpath(osp.join(dest_root, *parts))
            unsafe = (
                name.startswith('/') or (len(name) > 1 and name[1] == ':') or '..' in parts
                or not (target == dest_root or target.startswith(dest_root + os.sep))
                or stat.S_ISLNK(m.external_attr >> 16))
            if unsafe:
                raise UserValueError(f'{zip_path}: refusing to extract unsafe member '
                                     f'{m.filename!r} (absolute path, "..", or symlink)')
        n = 0
        for m in tqdm(
                members,
                desc=f'extract {osp.basename(zip_path)}',
                unit='file',
                disable=len(members) < 1000):
            if m.is_dir():
                continue
            target = osp.join(dest_root, *m.filename.replace('\\', '/').split('/'))
            os.makedirs(osp.dirname(target), exist_ok=True)
            with zf.open(m) as src, open(target, 'wb') as dst:
                shutil.copyfileobj(src, dst, CHUNK)
            n += 1
    return n

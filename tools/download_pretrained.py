"""Download a Sapiens pretrain TorchScript file from its public Hugging Face repo.

    python tools/download_pretrained.py [--arch 1b] [--out-dir data/pretrained]
                                        [--endpoint https://huggingface.co]

Default: facebook/sapiens-pretrain-1b-torchscript ->
data/pretrained/sapiens_1b/sapiens_1b_epoch_173_torchscript.pt2 (4.46 GB), the
``pretrained`` path of configs/sapiens/stage1_gtx1650.py. The download resumes where
it stopped, shows a progress bar, is checked against the size and SHA-256 the Hub
reports for the file, and must be TorchScript at the end. ``--endpoint`` (or env
HF_ENDPOINT) selects a mirror; HF_TOKEN is sent if set (the repos are public).
"""
import argparse
import os
import os.path as osp
import sys
import urllib.error
import urllib.request

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '..'))

from keypose_ext.utils.sapiens_download import USER_AGENT, DownloadError, download

# repo_id, file name (Sapiens release names: epoch of the released MAE checkpoint)
RELEASES = {
    '0.3b':
    ('facebook/sapiens-pretrain-0.3b-torchscript', 'sapiens_0.3b_epoch_1600_torchscript.pt2'),
    '0.6b':
    ('facebook/sapiens-pretrain-0.6b-torchscript', 'sapiens_0.6b_epoch_1600_torchscript.pt2'),
    '1b': ('facebook/sapiens-pretrain-1b-torchscript', 'sapiens_1b_epoch_173_torchscript.pt2'),
    '2b': ('facebook/sapiens-pretrain-2b-torchscript', 'sapiens_2b_epoch_660_torchscript.pt2'),
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split('\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__)
    p.add_argument('--arch', default='1b', choices=list(RELEASES))
    p.add_argument('--out-dir', default='data/pretrained')
    p.add_argument('--endpoint', default=os.environ.get('HF_ENDPOINT', 'https://huggingface.co'))
    p.add_argument('--revision', default='main')
    p.add_argument('--repo-id', help='override the Hub repo')
    p.add_argument('--filename', help='override the file name in the repo')
    p.add_argument('--timeout', type=float, default=60.)
    return p.parse_args(argv)


class _NoRedirect(urllib.request.HTTPRedirectHandler):

    def redirect_request(self, *args, **kwargs):
        return None


def hub_file_info(url: str, headers: dict, timeout: float) -> dict:
    """Size and SHA-256 the Hub reports for an LFS file (``X-Linked-*`` headers of
    the ``resolve`` redirect); empty if the server does not say."""
    req = urllib.request.Request(url, method='HEAD', headers=headers)
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        resp = opener.open(req, timeout=timeout)
        hdrs = resp.headers
    except urllib.error.HTTPError as e:
        if e.code in (301, 302, 303, 307, 308):
            hdrs = e.headers
        elif e.code in (401, 403, 404):
            raise DownloadError(f'{url}: HTTP {e.code}: no such public file; check --arch, '
                                '--repo-id/--filename or set HF_TOKEN') from None
        else:
            raise DownloadError(f'{url}: HTTP {e.code} {e.reason}') from None
    info = {}
    size = hdrs.get('X-Linked-Size')
    etag = (hdrs.get('X-Linked-Etag') or '').strip('"')
    if size and size.isdigit():
        info['size'] = int(size)
    if len(etag) == 64 and all(c in '0123456789abcdef' for c in etag.lower()):
        info['sha256'] = etag
    return info


def main(argv=None) -> int:
    args = parse_args(argv)
    repo_id, filename = RELEASES[args.arch]
    repo_id = args.repo_id or repo_id
    filename = args.filename or filename
    url = f'{args.endpoint.rstrip("/")}/{repo_id}/resolve/{args.revision}/{filename}'
    dest = osp.join(args.out_dir, f'sapiens_{args.arch}', filename)
    headers = {'User-Agent': USER_AGENT}
    if os.environ.get('HF_TOKEN'):
        headers['Authorization'] = f'Bearer {os.environ["HF_TOKEN"]}'
    offline = (f'Without internet, download https://huggingface.co/{repo_id} elsewhere '
               f'(file {filename}) and copy it to {dest}; or set --endpoint/HF_ENDPOINT '
               'to a reachable mirror. A partial download resumes.')
    try:
        try:
            info = hub_file_info(url, headers, args.timeout)
        except (urllib.error.URLError, OSError) as e:
            if isinstance(e, DownloadError):
                raise
            raise DownloadError(f'cannot reach {args.endpoint} ({getattr(e, "reason", e)}): '
                                f'are you offline? {offline}') from None
        print(f'{url} -> {dest}')
        download(
            url,
            dest,
            size=info.get('size'),
            sha256=info.get('sha256'),
            headers=headers,
            timeout=args.timeout,
            offline_hint=offline)
    except DownloadError as e:
        print(f'error: {e}', file=sys.stderr)
        return 1
    from keypose_ext.utils.sapiens_torchscript import detect_checkpoint_format
    kind = detect_checkpoint_format(dest)
    if kind != 'torchscript':
        print(
            f'error: {dest} was downloaded but is {kind}, not TorchScript; remove it and '
            'check --repo-id/--filename',
            file=sys.stderr)
        return 1
    checks = ', '.join(k for k in ('size', 'sha256') if k in info) or 'server length'
    print(f'ok: {dest} ({osp.getsize(dest) / 1e9:.2f} GB, TorchScript, checked {checks})')
    return 0


if __name__ == '__main__':
    sys.exit(main())

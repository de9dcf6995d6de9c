"""Shared helpers of the Sapiens tests: a tiny traced ViT and a tiny stage-1 config."""
import os.path as osp

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
TINY_ARCH = dict(embed_dims=32, num_layers=3, num_heads=4, feedforward_channels=64)
TINY_DECODER = dict(decoder_depth=1, decoder_embed_dim=16, decoder_num_heads=4)


def make_tiny_trace(path, arch=TINY_ARCH, img_size=64, mae=True, seed=0):
    """A tiny TorchScript file; returns ``(path, eager model that was traced)``.

    ``mae=True``: Meta's structure (mmpretrain MAE: cls token, decoder ``neck.*``,
    preprocessor buffers); ``mae=False``: a plain ViT without cls token.
    """
    from keypose_ext.testing.sapiens_trace import (build_plain_encoder, build_sapiens_mae,
                                                   trace_to_file)
    model = (
        build_sapiens_mae(dict(arch), img_size, seed=seed, **TINY_DECODER)
        if mae else build_plain_encoder(dict(arch), img_size, seed=seed))
    return trace_to_file(model, str(path), img_size), model


def write_tiny_stage1_config(tmp_path,
                             checkpoint,
                             data_root,
                             switch_epoch=1,
                             max_epochs=3,
                             phase2=None,
                             extra='',
                             base='stage1_gtx1650.py'):
    """A config inheriting configs/sapiens/stage1_gtx1650.py as the variants do,
    shrunk to a 3-block 32-dim ViT at 64x48 (H x W) on a synthetic COCO set; phase 2
    is the base config's LoRA route unless ``phase2`` says otherwise."""
    phase2 = phase2 or dict(mode='lora', with_cp=True)
    base = osp.join(ROOT, 'configs', 'sapiens', base)
    text = f'''
_base_ = [{base!r}]
codec = dict(type='UDPHeatmap', input_size=(48, 64), heatmap_size=(12, 16), sigma=1.5)
model = dict(
    backbone=dict(arch=dict(_delete_=True, **{TINY_ARCH!r}), img_size=codec['input_size'][::-1],
                  checkpoint={None if checkpoint is None else str(checkpoint)!r}),
    head=dict(in_channels=32, deconv_out_channels=(16, 16), decoder=codec))
custom_hooks = [dict(type='SapiensPhaseSwitchHook', switch_epoch={switch_epoch},
                     phase2={phase2!r}),
                dict(type='SapiensLoRAMergeHook')]
train_pipeline = [
    dict(type='LoadImage'), dict(type='GetBBoxCenterScale'),
    dict(type='RandomFlip', direction='horizontal'),
    dict(type='TopdownAffine', input_size=codec['input_size'], use_udp=True),
    dict(type='GenerateTarget', encoder=codec), dict(type='PackPoseInputs')]
val_pipeline = [
    dict(type='LoadImage'), dict(type='GetBBoxCenterScale'),
    dict(type='TopdownAffine', input_size=codec['input_size'], use_udp=True),
    dict(type='PackPoseInputs')]
data_root = {str(data_root) + '/'!r}
train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,
                        dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,
                      dataset=dict(data_root=data_root, pipeline=val_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/person_keypoints_val2017.json')
test_evaluator = val_evaluator
optim_wrapper = dict(accumulative_counts=2)
train_cfg = dict(max_epochs={max_epochs}, val_interval=1)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', by_epoch=True, begin={switch_epoch},
         end={max(max_epochs, switch_epoch + 1)},
         T_max={max(1, max_epochs - switch_epoch)}, eta_min_ratio=1e-2,
         convert_to_iter_based=True)]
default_hooks = dict(checkpoint=dict(interval=1), logger=dict(interval=1))
visualizer = dict(vis_backends=[dict(type='LocalVisBackend')])
{extra}
'''
    path = osp.join(str(tmp_path), 'tiny_stage1.py')
    with open(path, 'w') as f:
        f.write(text)
    return path


class RangeHTTPServer:
    """A local HTTP server over a folder, with ``Range`` support (what resumable
    downloads need; http.server has none), extra headers per path, a switch that
    ignores ``Range``, and one-shot truncation to simulate a dropped connection.

    ``with RangeHTTPServer(folder) as srv: srv.url`` -> ``http://127.0.0.1:PORT``.
    ``srv.requests`` lists ``(method, path, range_header)``.
    """

    def __init__(self, root):
        import http.server
        import threading
        self.root = str(root)
        self.headers = {}  # path -> {header: value}
        self.ignore_range = False
        self.truncate_once = {}  # path -> bytes to send before closing
        self.requests = []
        srv = self

        class Handler(http.server.BaseHTTPRequestHandler):

            def log_message(self, *args):
                pass

            def _serve(self, body):
                path = self.path.split('?')[0]
                srv.requests.append((self.command, path, self.headers.get('Range')))
                full = osp.join(srv.root, path.lstrip('/'))
                if not osp.isfile(full):
                    self.send_error(404)
                    return
                data = open(full, 'rb').read()
                start = 0
                rng = self.headers.get('Range')
                if rng and not srv.ignore_range:
                    start = int(rng.split('=')[1].split('-')[0])
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header('Content-Range', f'bytes */{len(data)}')
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header('Content-Range', f'bytes {start}-{len(data) - 1}/{len(data)}')
                else:
                    self.send_response(200)
                self.send_header('Content-Length', str(len(data) - start))
                for k, v in srv.headers.get(path, {}).items():
                    self.send_header(k, v)
                self.end_headers()
                if not body:
                    return
                cut = srv.truncate_once.pop(path, None)
                chunk = data[start:] if cut is None else data[start:start + cut]
                self.wfile.write(chunk)
                if cut is not None:
                    self.wfile.flush()
                    self.close_connection = True

            def do_GET(self):
                self._serve(True)

            def do_HEAD(self):
                self._serve(False)

        self.httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.url = f'http://127.0.0.1:{self.httpd.server_address[1]}'
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def closed_port_url():
    """A URL nothing listens on (an 'offline' endpoint)."""
    import socket
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
    s.close()
    return f'http://127.0.0.1:{port}'

"""The project's bottle training against seed 000's hand-written loop, side by side.

    python benchmarks/bottle_vs_seed_loop.py [--frames 64] [--size 640 480] [--input 224]
        [--epochs 4] [--pairs 3] [--batch 16] [--device cpu|cuda] [--workers N]
        [--json out.json]

Each pair trains the same synthetic clip for --epochs epochs twice:

  project  configs/bottle/td-depthreg_res18_1xb16-1000e_bottle-224x224.py through
           keypose_ext's Runner, as a user runs it (its dataloader workers, cache and
           train loop as configured: the plain path on a CPU, the fast path on a GPU)
  seed     seed 000's loop as written: torchvision ResNet-18 + Linear(512, 27), MSE,
           Adam 1e-4, a DataLoader over in-memory tensors (the frames and targets the
           project trains on), each batch moved to --device, a loss print every 10 epochs

and times every epoch; a run's rate is its median epoch after the first (the first fills
the caches). The pairs alternate their order (project first, then seed first), so load
from elsewhere slows both alike; the figure is the median of the pairs' ratios
project / seed: 1.0 is as fast as the hand loop. A ratio, never an absolute rate, is what
to compare between machines. ``--workers N`` overrides the config's dataloader workers
(e.g. 2, what the config had before it picked them from the cache mode and the cores).
"""
import argparse
import copy
import json
import os.path as osp
import statistics
import sys
import tempfile
import time

import torch

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '..'))
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))  # gpu_suite, when imported
import gpu_suite  # noqa: E402
from gpu_suite import BOTTLE_CONFIG, seed_tensors, set_input_size  # noqa: E402


def project_run(cfg, work_dir: str, epochs: int, frames: int, tag: str) -> dict:
    """``epochs`` epochs of the config through the Runner, no validation."""
    cfg = copy.deepcopy(cfg)
    cfg.merge_from_dict({
        'work_dir': work_dir,
        'experiment_name': f'bottle_vs_seed_loop_{tag}',  # a message hub of its own
        'log_level': 'WARNING',
        'train_cfg.max_epochs': epochs,
        'default_hooks.checkpoint.save_best': None,
    })
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    # A visualizer of its own: the global 'visualizer' would keep this run's (temporary)
    # folder for every later Runner of the process.
    cfg.visualizer.name = cfg.experiment_name
    runner = gpu_suite.build_runner(cfg)
    timer = gpu_suite.epoch_timer()
    runner.register_hook(timer)
    runner.train()
    loop = runner.train_loop
    return dict(
        images_per_s=gpu_suite.median_epoch_images_per_s(frames, timer.seconds),
        final_loss=float(runner.message_hub.get_scalar('train/loss').current()),
        num_workers=cfg.train_dataloader.num_workers,
        fast_path=bool(getattr(loop, 'fast_path_active', False)))


def seed_run(x: torch.Tensor, y: torch.Tensor, epochs: int, batch: int,
             device: torch.device) -> dict:
    """Seed 000's loop over (N, 3, H, W) inputs and (N, 27) targets held on the host."""
    torch.manual_seed(0)
    model = gpu_suite.seed_model().to(device)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x, y), batch_size=batch, shuffle=True)
    criterion = torch.nn.MSELoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    seconds = []
    for epoch in range(epochs):
        if device.type == 'cuda':
            torch.cuda.synchronize(device)
        t = time.perf_counter()
        model.train()
        for images, targets in loader:
            images, targets = images.to(device), targets.to(device)
            optimizer.zero_grad()
            loss = criterion(model(images), targets)
            loss.backward()
            optimizer.step()
        if (epoch + 1) % 10 == 0:
            loss.item()  # the seed's print
        if device.type == 'cuda':
            torch.cuda.synchronize(device)
        seconds.append(time.perf_counter() - t)
    return dict(
        images_per_s=gpu_suite.median_epoch_images_per_s(len(x), seconds),
        final_loss=float(loss.item()))


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(
        description=__doc__.split('\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__)
    p.add_argument('--frames', type=int, default=64)
    p.add_argument('--size', type=int, nargs=2, default=(640, 480), help='frame w h')
    p.add_argument('--input', type=int, default=224)
    p.add_argument('--epochs', type=int, default=4, help='per run; the first is not timed')
    p.add_argument('--pairs', type=int, default=3)
    p.add_argument('--batch', type=int, default=16)
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument(
        '--workers', type=int, help="the project's dataloader workers "
        "(default: the config's)")
    p.add_argument('--json', help='also write the figures here')
    args = p.parse_args(argv)
    if args.epochs < 2:
        p.error('--epochs must be at least 2: the first epoch is not timed')

    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    import keypose_ext  # noqa: F401
    from keypose_ext.testing.synthetic_bottle import make_bottle_dataset
    init_default_scope('mmpose')
    device = torch.device(args.device)
    result = dict(
        frames=args.frames,
        frame_size=list(args.size),
        input=args.input,
        batch=args.batch,
        epochs=args.epochs,
        device=args.device,
        torch_threads=torch.get_num_threads(),
        pairs=[])
    with tempfile.TemporaryDirectory() as tmp:
        data = osp.join(tmp, 'data')
        make_bottle_dataset(data, num_frames=args.frames, size=tuple(args.size), seed=0)
        cfg = Config.fromfile(osp.join(osp.dirname(osp.abspath(__file__)), '..', BOTTLE_CONFIG))
        set_input_size(cfg, (args.input, args.input))
        opts = {'randomness': dict(seed=0), 'train_dataloader.batch_size': args.batch}
        for split in ('train', 'val', 'test'):
            opts[f'{split}_dataloader.dataset.data_root'] = data
            opts[f'{split}_dataloader.dataset.cache_dir'] = osp.join(tmp, 'cache')
        if args.workers is not None:
            opts['train_dataloader.num_workers'] = args.workers
            opts['train_dataloader.persistent_workers'] = args.workers > 0
        cfg.merge_from_dict(opts)
        x, y = seed_tensors(cfg, torch.device('cpu'))  # held on the host, as the seed's
        print(f'{args.frames} frames {args.size[0]}x{args.size[1]}, input {args.input}, '
              f'batch {args.batch}, {args.epochs} epochs a run, {args.pairs} pairs, '
              f'{args.device}, {torch.get_num_threads()} torch threads')
        for i in range(args.pairs):
            runs = {}
            order = ('project', 'seed') if i % 2 == 0 else ('seed', 'project')
            for name in order:
                if name == 'project':
                    runs[name] = project_run(cfg, osp.join(tmp, f'work_{i}'), args.epochs,
                                             args.frames, f'{osp.basename(tmp)}_{i}')
                else:
                    runs[name] = seed_run(x, y, args.epochs, args.batch, device)
            runs['order'] = list(order)
            runs['ratio'] = round(runs['project']['images_per_s'] / runs['seed']['images_per_s'], 3)
            result['pairs'].append(runs)
            print(f'  pair {i + 1} ({" then ".join(order)}): project '
                  f'{runs["project"]["images_per_s"]} img/s, seed '
                  f'{runs["seed"]["images_per_s"]} img/s, ratio {runs["ratio"]}')
    result['ratio_median'] = round(statistics.median(r['ratio'] for r in result['pairs']), 3)
    first = result['pairs'][0]['project']
    print(f'project / seed loop: {result["ratio_median"]} (median of {args.pairs} pairs; '
          f'project: {first["num_workers"]} dataloader workers, '
          f'{"fast" if first["fast_path"] else "plain"} path)')
    if args.json:
        from keypose_ext.utils.io import atomic_write
        with atomic_write(args.json, 'w') as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == '__main__':
    main()

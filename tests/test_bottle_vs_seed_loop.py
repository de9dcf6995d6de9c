"""benchmarks/bottle_vs_seed_loop.py: the project's Runner and seed 000's loop, side by side
on the same frames, in alternating order; the figure is the median of the pairs' ratios."""
import importlib.util
import json
import math
import os.path as osp
import statistics

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def _benchmark():
    spec = importlib.util.spec_from_file_location(
        'bottle_vs_seed_loop', osp.join(ROOT, 'benchmarks', 'bottle_vs_seed_loop.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_pairs_alternate_and_the_figure_is_their_median_ratio(tmp_path):
    out = tmp_path / 'ratio.json'
    result = _benchmark().main([
        '--frames', '8', '--size', '64', '48', '--input', '32', '--epochs', '2', '--pairs', '3',
        '--batch', '4', '--device', 'cpu', '--json',
        str(out)
    ])
    assert json.loads(out.read_text()) == result
    pairs = result['pairs']
    assert [p['order'][0] for p in pairs] == ['project', 'seed', 'project']
    for p in pairs:
        assert p['ratio'] == round(p['project']['images_per_s'] / p['seed']['images_per_s'], 3)
        # Both trained: a finite MSE on the same targets.
        assert math.isfinite(p['project']['final_loss']) and math.isfinite(p['seed']['final_loss'])
        # On a CPU the config takes the Runner's plain path, and its output cache 0 workers.
        assert p['project']['fast_path'] is False and p['project']['num_workers'] == 0
    assert result['ratio_median'] == round(statistics.median(p['ratio'] for p in pairs), 3)


def test_the_seed_loop_trains_on_the_frames_the_project_trains_on(tmp_path):
    import torch
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    from keypose_ext.testing.synthetic_bottle import make_bottle_dataset
    bench = _benchmark()
    init_default_scope('mmpose')
    make_bottle_dataset(str(tmp_path / 'data'), num_frames=6, size=(64, 48), seed=0)
    cfg = Config.fromfile(osp.join(ROOT, bench.BOTTLE_CONFIG))
    bench.set_input_size(cfg, (32, 32))
    cfg.merge_from_dict({
        'train_dataloader.dataset.data_root': str(tmp_path / 'data'),
        'train_dataloader.dataset.cache_dir': str(tmp_path / 'cache')
    })
    x, y = bench.seed_tensors(cfg, torch.device('cpu'))
    assert x.shape == (6, 3, 32, 32) and y.shape == (6, 27)
    # Normalised by the model's preprocessor, as the project's backbone sees them.
    assert abs(float(x.mean())) < 3 and x.std() > 0.1
    first = bench.seed_run(x, y, epochs=2, batch=3, device=torch.device('cpu'))
    more = bench.seed_run(x, y, epochs=30, batch=3, device=torch.device('cpu'))
    assert more['final_loss'] < first['final_loss']  # the loop updates the model (no score claim)

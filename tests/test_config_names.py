"""Config file names follow MMPose's pattern, so a user can read a config from its name."""
import glob
import os.path as osp
import re

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
# {algorithm}_{backbone}_{N}xb{B}-{E}e_{dataset}-{H}x{W}.py,
# e.g. td-hm_res50_8xb64-210e_coco-256x192.py
PATTERN = re.compile(r'^[a-z0-9-]+_[a-z0-9-]+_\d+xb\d+-\d+e_[a-z0-9-]+-\d+x\d+\.py$')
# Names users already type (seed 002); each inherits a config of the pattern's family.
KEPT = {'configs/sapiens/stage1_gtx1650.py'}


def test_every_config_name_follows_the_mmpose_pattern():
    configs = [
        osp.relpath(p, ROOT) for p in glob.glob(osp.join(ROOT, 'configs', '*', '*.py'))
        if not osp.basename(osp.dirname(p)).startswith('_')
    ]
    assert len(configs) > 20
    bad = [c for c in configs if c not in KEPT and not PATTERN.match(osp.basename(c))]
    assert not bad, f'config names off the pattern: {bad}'


def test_the_pattern_rejects_free_names():
    assert PATTERN.match('td-hm_res50_8xb64-210e_coco-256x192.py')
    assert not PATTERN.match('bottle_res18_overfit.py')
    assert not PATTERN.match('capeseq_res50_mp100-split1-1shot-256x256.py')

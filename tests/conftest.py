import os
import sys

import pytest

# albumentations (imported by mmpose) asks PyPI for updates at import: never wait on it.
os.environ.setdefault('NO_ALBUMENTATIONS_UPDATE', '1')
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


def pytest_configure(config):
    config.addinivalue_line('markers', 'slow: takes more than ~30 s on a 2-core CPU')
    config.addinivalue_line('markers', 'gpu: needs CUDA')


@pytest.fixture(autouse=True)
def _mmpose_scope():
    """Every test builds from mmpose's registries, as configs do."""
    from mmengine.registry import DefaultScope

    import keypose_ext  # noqa: F401  (registers everything)
    if DefaultScope.get_current_instance() is None:
        DefaultScope.get_instance('keypose_ext_tests', scope_name='mmpose')
    yield

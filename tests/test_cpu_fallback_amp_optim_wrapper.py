import pytest
import torch
from mmengine.optim import AmpOptimWrapper as MMEngineAmp
from mmengine.optim import OptimWrapper, build_optim_wrapper

from keypose_ext.engine.optim_wrappers import amp_optim_wrapper


def _build(**extra):
    model = torch.nn.Linear(3, 1)
    cfg = dict(type='AmpOptimWrapper', optimizer=dict(type='SGD', lr=0.1),
               accumulative_counts=4, clip_grad=dict(max_norm=1.0), **extra)
    return model, build_optim_wrapper(model, cfg)


@pytest.mark.skipif(torch.cuda.is_available(), reason='checks the CPU fallback')
def test_cpu_fallback_keeps_accumulation_and_warns_once(caplog):
    amp_optim_wrapper.AmpOptimWrapper._warned = False
    with pytest.raises(AssertionError):  # the stock wrapper refuses a CPU-only machine
        MMEngineAmp(optimizer=torch.optim.SGD(torch.nn.Linear(1, 1).parameters(), lr=1))
    model, wrapper = _build(loss_scale='dynamic', dtype='float16')
    _, again = _build()
    assert type(wrapper) is OptimWrapper and type(again) is OptimWrapper
    assert wrapper._accumulative_counts == 4
    assert wrapper.clip_grad_kwargs == dict(max_norm=1.0)
    assert amp_optim_wrapper.AmpOptimWrapper._warned

    # Gradients accumulate over 4 calls before one optimizer step.
    before = model.weight.detach().clone()
    wrapper.initialize_count_status(model, 0, 8)
    for i in range(3):
        wrapper.update_params(model(torch.ones(2, 3)).sum())
        assert torch.equal(model.weight, before), f'stepped after {i + 1} calls'
    wrapper.update_params(model(torch.ones(2, 3)).sum())
    assert not torch.equal(model.weight, before)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_gpu_builds_real_amp_wrapper():
    _, wrapper = _build(loss_scale='dynamic')
    assert isinstance(wrapper, MMEngineAmp)
    assert wrapper._accumulative_counts == 4

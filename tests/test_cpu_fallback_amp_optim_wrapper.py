import pytest
import torch
from mmengine.optim import AmpOptimWrapper as MMEngineAmp
from mmengine.optim import OptimWrapper, build_optim_wrapper

from keypose_ext.engine.optim_wrappers import cpu_fallback_amp_optim_wrapper as mod
from keypose_ext.engine.optim_wrappers.cpu_fallback_amp_optim_wrapper import \
    CpuFallbackAmpOptimWrapper


def _build(wrapper_type='CpuFallbackAmpOptimWrapper', seed=0, **extra):
    torch.manual_seed(seed)
    model = torch.nn.Linear(3, 1)
    cfg = dict(
        type=wrapper_type,
        optimizer=dict(type='SGD', lr=0.1),
        accumulative_counts=4,
        clip_grad=dict(max_norm=1.0),
        **extra)
    return model, build_optim_wrapper(model, cfg)


def _train(model, wrapper, steps=8):
    wrapper.initialize_count_status(model, 0, steps)
    for i in range(steps):
        with wrapper.optim_context(model):
            loss = (model(torch.full((2, 3), float(i)))**2).mean()
        wrapper.update_params(loss)
    return model.weight.detach().clone()


@pytest.mark.skipif(torch.cuda.is_available(), reason='checks the CPU fallback')
def test_cpu_fallback_equals_plain_optim_wrapper_and_warns_once(caplog):
    mod.CpuFallbackAmpOptimWrapper._warned = False
    with pytest.raises(AssertionError):  # the stock wrapper refuses a CPU-only machine
        MMEngineAmp(optimizer=torch.optim.SGD(torch.nn.Linear(1, 1).parameters(), lr=1))
    model, wrapper = _build(loss_scale='dynamic', dtype='float16')
    _, again = _build()
    assert isinstance(wrapper, CpuFallbackAmpOptimWrapper) and isinstance(wrapper, MMEngineAmp)
    assert not wrapper.amp_enabled and wrapper.cast_dtype is None
    assert wrapper._accumulative_counts == 4 and again._accumulative_counts == 4
    assert wrapper.clip_grad_kwargs == dict(max_norm=1.0)
    assert mod.CpuFallbackAmpOptimWrapper._warned

    plain_model, plain = _build('OptimWrapper')
    assert type(plain) is OptimWrapper
    assert torch.equal(_train(model, wrapper), _train(plain_model, plain))  # float32, exact

    # no CPU autocast (it would be bfloat16)
    with wrapper.optim_context(model):
        assert model(torch.ones(1, 3)).dtype == torch.float32


@pytest.mark.skipif(torch.cuda.is_available(), reason='checks the CPU fallback')
def test_accumulates_before_stepping():
    model, wrapper = _build()
    before = model.weight.detach().clone()
    wrapper.initialize_count_status(model, 0, 8)
    for i in range(3):
        wrapper.update_params(model(torch.ones(2, 3)).sum())
        assert torch.equal(model.weight, before), f'stepped after {i + 1} calls'
    wrapper.update_params(model(torch.ones(2, 3)).sum())
    assert not torch.equal(model.weight, before)


@pytest.mark.skipif(torch.cuda.is_available(), reason='checks the CPU fallback')
def test_state_dict_round_trip_and_gpu_checkpoint_on_cpu():
    model, wrapper = _build()
    _train(model, wrapper, 4)
    state = wrapper.state_dict()
    state['loss_scaler'] = {'scale': 1024.0, 'growth_factor': 2.0}  # as saved on a GPU
    _, other = _build()
    other.load_state_dict(state)
    assert other.optimizer.state_dict()['param_groups'] == \
        wrapper.optimizer.state_dict()['param_groups']


def test_stock_amp_optim_wrapper_name_is_mmengines():
    from mmpose.registry import OPTIM_WRAPPERS
    assert OPTIM_WRAPPERS.get('AmpOptimWrapper') is MMEngineAmp


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_gpu_builds_real_amp_wrapper():
    _, wrapper = _build(loss_scale='dynamic')
    assert wrapper.amp_enabled and isinstance(wrapper, MMEngineAmp)
    assert wrapper._accumulative_counts == 4

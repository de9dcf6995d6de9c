# Each import below registers one component (one per file).
from .cpu_fallback_amp_optim_wrapper import CpuFallbackAmpOptimWrapper  # noqa: F401
from .sapiens_layer_decay_optim_wrapper_constructor import \
    SapiensLayerDecayOptimWrapperConstructor  # noqa: F401,E501

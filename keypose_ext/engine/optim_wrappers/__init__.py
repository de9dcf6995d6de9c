# Each import below registers one component (one per file).
from .amp_optim_wrapper import AmpOptimWrapper  # noqa: F401
from .sapiens_layer_decay_optim_wrapper_constructor import SapiensLayerDecayOptimWrapperConstructor  # noqa: F401,E501

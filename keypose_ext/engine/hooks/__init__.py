# Each import below registers one component (one per file).
from .sapiens_phase_switch_hook import SapiensPhaseSwitchHook  # noqa: F401
from .keypose_checkpoint_hook import KeyposeCheckpointHook  # noqa: F401
from .non_finite_loss_hook import NonFiniteLossHook  # noqa: F401

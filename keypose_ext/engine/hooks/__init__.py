# Each import below registers one component (one per file).
from .keypose_checkpoint_hook import KeyposeCheckpointHook  # noqa: F401
from .non_finite_loss_hook import NonFiniteLossHook  # noqa: F401
from .sapiens_lora_merge_hook import SapiensLoRAMergeHook  # noqa: F401
from .sapiens_phase_switch_hook import SapiensPhaseSwitchHook  # noqa: F401

# Each import below registers one component (one per file).
from .sapiens_phase_switch_hook import SapiensPhaseSwitchHook  # noqa: F401

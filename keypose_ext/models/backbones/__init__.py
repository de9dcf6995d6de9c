# Each import below registers one component (one per file).
from .sapiens_torchscript_backbone import SapiensTorchScriptBackbone  # noqa: F401

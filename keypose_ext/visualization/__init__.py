# Each import below registers one component (one per file).
from .bottle_box_visualizer import BottleBoxVisualizer  # noqa: F401
from .cape_visualizer import CapeVisualizer  # noqa: F401
from .keypose_local_visualizer import KeyposeLocalVisualizer  # noqa: F401

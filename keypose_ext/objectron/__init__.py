"""Objectron annotation support: the protobuf schema and a reader."""
from .reader import (ObjectronFrame, load_objectron_sequence,  # noqa: F401
                     read_objectron_annotations)

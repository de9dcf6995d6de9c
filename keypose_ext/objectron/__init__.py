"""Objectron support: the protobuf schema, a reader, 3D boxes and Objectron's evaluation."""
from .reader import (ObjectronClip, ObjectronClipFrame, ObjectronFrame, ObjectronInstance,
                     load_objectron_sequence, read_objectron_annotations, read_objectron_clip)

__all__ = [
    'ObjectronClip', 'ObjectronClipFrame', 'ObjectronFrame', 'ObjectronInstance',
    'load_objectron_sequence', 'read_objectron_annotations', 'read_objectron_clip'
]

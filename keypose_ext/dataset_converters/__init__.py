"""Dataset converters used by ``tools/dataset_converters/`` (not registered components)."""

"""Synthetic data generators for tests, benchmarks and demos (not components).

Import the module you need, e.g. ``keypose_ext.testing.synthetic_bottle``; nothing here
is registered and ``import keypose_ext`` does not import this package.
"""

"""Reconstruction methods: one module per method, discovered by ``benchmark.registry``.

Shared pieces (networks, the DIP fitting loop, training utilities) live in sub-packages whose
names start with an underscore, so they are never mistaken for a method.
"""

"""Shared pieces of the methods the suite trains itself (``unet``, ``dps``): small networks,
seeded patch training with a progress bar, and the sha256-keyed checkpoint cache."""

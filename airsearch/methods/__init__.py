"""Gradient and uncertainty attribution methods: TracIn / grad-cos, DDA, HAIF, Daunce (methods.md §2-§5).

- :mod:`~airsearch.methods.gradients`: per-example and per-token gradients (torch.func), parameter sets
- :mod:`~airsearch.methods.projection`: seeded block-wise JL projection
- :mod:`~airsearch.methods.store`: stored train vectors with a manifest (refuses mismatched reuse)
- :mod:`~airsearch.methods.base`: the :class:`AttributionMethod` interface, block-wise scoring, rerank
- :mod:`~airsearch.methods.tracin`, :mod:`~airsearch.methods.dda`, :mod:`~airsearch.methods.haif`,
  :mod:`~airsearch.methods.daunce`: the methods
"""

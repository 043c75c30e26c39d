"""Helpers shared by the tests (test modules import from here or get fixtures from ``conftest.py``,
never from another test module).

- :mod:`tests.helpers.models`: small real models (tiny BERT, micro Llama) and synthetic examples
- :mod:`tests.helpers.grads`: plain per-example autograd references for the gradient tests
- :mod:`tests.helpers.corpora`: small metadata-rich corpora for the index / query / select tests
- :mod:`tests.helpers.cli`: :func:`run`, one ``airsearch`` command through click's runner
"""

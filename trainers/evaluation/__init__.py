"""Evaluation harness: metrics, planted-ground-truth benchmarks, method adapters and eval commands.

See ``docs/evaluation.md`` and ``docs/equations.md`` §6 for what each evaluation measures.
"""

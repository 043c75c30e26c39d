"""Evaluation harness: metrics, planted-ground-truth benchmarks, method adapters and eval commands.

See ``docs/evaluation.md`` and ``../shared/docs/methods.md`` §6 for what each evaluation measures.
"""

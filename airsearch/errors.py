"""Expected failures: each carries a message that says what is wrong and where.

The CLI prints these without a traceback and exits non-zero; anything else is a bug.
"""

from __future__ import annotations


class AirsearchError(Exception):
    """Base class for every expected, user-facing failure."""

    exit_code = 2

    def __init__(self, message: str, *, where: str | None = None) -> None:
        self.message = message
        self.where = where
        super().__init__(f"{where}: {message}" if where else message)


class InputError(AirsearchError):
    """Bad user input: a corpus row, a config value, a missing file."""


class FingerprintMismatch(AirsearchError):
    """An artefact was made by a different corpus, model, encoder or config than the one in use."""


class MissingDependency(AirsearchError):
    """An optional extra (faiss, ray, gguf) is needed but not installed."""

    def __init__(self, package: str, extra: str, purpose: str) -> None:
        super().__init__(
            f"{purpose} needs the '{package}' package; install it with: pip install 'airsearch[{extra}]'"
        )

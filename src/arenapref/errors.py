"""Every failure a user can cause, as one hierarchy.

`ArenaprefError` is the base: the command line prints its message on one line and exits with status 2. Each
subclass also derives from the builtin it replaces, so code that caught `ValueError` or `ImportError` before
still catches it. Anything that is not an `ArenaprefError` is a bug in arenapref and shows its traceback.
"""

from __future__ import annotations

import importlib


class ArenaprefError(Exception):
    """A failure the user can fix; the message says what to fix (file, row, field or flag)."""


class DataError(ArenaprefError, ValueError):
    """Input data cannot be read: the message names the file, row, id and field (see data/problems.py)."""


class InputNotFound(ArenaprefError, FileNotFoundError):
    """A named input file or folder does not exist, or a folder holds no data files."""


class ConfigError(ArenaprefError, ValueError):
    """A config file, a --set override or a combination of options is invalid."""


class UsageError(ArenaprefError, ValueError):
    """A flag or argument that does not apply, or a call that cannot work as asked."""


class NotFittedError(ArenaprefError, ValueError, AttributeError):
    """A model was asked to predict or save before `fit` (or `load_model`), as in scikit-learn."""


class ModelDirError(ArenaprefError, FileNotFoundError):
    """A model directory is missing, incomplete, or written by an incompatible version."""


class UnsafeModelError(ArenaprefError, PermissionError):
    """A model directory holds a format that could run code on load (a pickle) and was not trusted explicitly."""


class MissingExtraError(ArenaprefError, ImportError):
    """An optional dependency is not installed; the message names the extra that installs it."""


class DeviceError(ArenaprefError, RuntimeError):
    """A setting the hardware cannot honour (4-bit weights on a CPU, a row that does not fit in memory)."""


class OutputError(ArenaprefError, OSError):
    """An output cannot be written where asked (read-only, full disk, a file where a folder is needed)."""


class SubmissionError(ArenaprefError, ValueError):
    """A submission (or its solution file) does not follow the competition's rules."""


class PredictionFileError(ArenaprefError, ValueError):
    """A prediction file (oof.csv, submission) cannot be used: columns, ids or values."""


class ResumeMismatch(ArenaprefError, ValueError):
    """--resume points at results of a different run (inputs, model or settings)."""


class WorkDirBusy(ArenaprefError, RuntimeError):
    """Another run holds the work directory."""


class SingleRowOutOfMemory(DeviceError):
    """One sequence alone does not fit in the device's memory."""


# pip extras and the modules each one installs: one place for "this needs the X extra"
EXTRAS = {
    "embed": "sentence-transformers, transformers and torch",
    "transformer": "transformers, peft, accelerate and torch",
    "judge": "transformers, peft, gguf and torch",
    "qlora": "bitsandbytes",
    "serve": "fastapi, uvicorn, fastapi-offline and httpx",
    "ray": "Ray Data",
    "tune": "optuna",
}


def require_extra(extra: str, *modules: str, what: str = "") -> None:
    """Import `modules` or raise MissingExtraError naming the extra that installs them.

    >>> require_extra("serve", "fastapi", "uvicorn", what="serving")  # doctest: +SKIP
    """
    missing = []
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        need = f"{what} needs " if what else "needs "
        raise MissingExtraError(f"{need}{', '.join(missing)}: pip install 'arenapref[{extra}]'"
                                + (f" ({EXTRAS[extra]})" if extra in EXTRAS else ""))

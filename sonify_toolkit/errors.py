"""The errors a user must act on, and the exit codes the CLI gives them.

`SonifyError` is the one family the CLI prints as a single line (exit 2): a wrong option, a missing
input, a stage folder made with other parameters, a model that cannot be loaded. Anything else
(a `ValueError` deep in pyarrow, an `AssertionError`) is a bug and keeps its traceback. Bad *items*
(a corrupt file, an unparsable answer, a tampered row) are neither: they become error rows.
"""

from __future__ import annotations

# Exit codes, documented in the README ("Exit codes").
EXIT_OK = 0
EXIT_BUG = 1  # an unexpected exception: Python's own code, with its traceback
EXIT_CANNOT_RUN = 2  # a SonifyError: one line, nothing (more) was done
EXIT_ITEM_ERRORS = 3  # the run finished, but some items became error rows
EXIT_SIGINT = 130
EXIT_SIGTERM = 143


class SonifyError(Exception):
    """A situation the user must act on; the CLI prints its first line and exits 2."""


class InputError(SonifyError):
    """An input (folder, file, table, option value) that cannot be used as given."""


class StageMismatchError(SonifyError):
    """A stage folder holds shards made with other parameters or another plan."""


class ModelLoadError(SonifyError):
    """A checkpoint that cannot be loaded (not found, offline, unreachable Hub)."""


class DeviceError(SonifyError):
    """A device that was asked for and does not exist on this machine."""


class ConcurrentRunError(SonifyError):
    """Another live process holds work in the same stage (a lease), or changed the stage under us."""

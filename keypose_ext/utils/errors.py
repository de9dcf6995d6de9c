"""The project's user-error types.

A component raises one of these when the *user* can fix the cause (a wrong path,
malformed JSON, a wrong keypoint count, a mismatched weights file); the message names
the file or field and the fix. ``tools/*.py`` print such errors as one line
(``keypose_ext.utils.cli.run_main``); every other exception is a bug in our code or
a library and keeps its traceback.

Each type also subclasses the matching builtin, so ``except ValueError`` and
``pytest.raises(ValueError)`` keep working. The constructors take one message
argument, because mmengine's registry re-raises build errors as
``type(e)(f'class `X` in ...: {e}')``.
"""


class KeyposeUserError(Exception):
    """Base class: an error the user caused and can fix (printed as one line)."""


class UserValueError(KeyposeUserError, ValueError):
    """A value in a file, config or argument is wrong (names the field and the fix)."""


class UserFileNotFoundError(KeyposeUserError, FileNotFoundError):
    """A file or folder the user named does not exist (names the path and the fix)."""


class UserRuntimeError(KeyposeUserError, RuntimeError):
    """The environment refuses an action the user asked for (disk, permissions, lock)."""

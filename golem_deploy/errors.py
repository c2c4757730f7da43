"""The root of golem-deploy's typed errors.

Every layer raises its own subclass (ManifestError, YagnaError, LocalnetError, ...). The CLI
turns any GolemDeployError into one clear message and an exit code; a traceback is shown
only with --debug, because a traceback is never the right answer to a user's mistake.
"""

from __future__ import annotations


class GolemDeployError(Exception):
    """An error the user can act on: `message` says what is wrong, `hint` how to fix it."""

    exit_code: int = 1

    def __init__(self, message: str, *, hint: str | None = None, exit_code: int | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        if exit_code is not None:
            self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message if self.hint is None else f"{self.message}\n  hint: {self.hint}"

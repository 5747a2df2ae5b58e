"""Errors a user can fix: the CLI prints them in one line and exits with status 2."""

from __future__ import annotations

from collections.abc import Iterable


class UserError(Exception):
    """Bad input from the user (unknown name, malformed config, missing or corrupt file)."""


class WeightsUnavailable(UserError):
    """Released weights that cannot be had here (not in the weights folder, not downloadable).

    The harness records the cells of such a method as skipped, with this message (which names the
    variable to set), rather than failed: a fresh machine without the files is not an error.
    """


class DataUnavailable(UserError):
    """A standard dataset whose files cannot be had here (not in ``$DIPBENCH_DATA``, not in the
    download cache, and no download possible: offline, refused, no public address).

    Like missing weights, not an error of the run: the cells that need the set are recorded as
    skipped with this message (which says what to set) and every other cell runs. A file that is
    there but corrupt (a checksum mismatch) is an error, never this."""

    def __init__(self, dataset: str, message: str) -> None:
        super().__init__(message)
        self.dataset = dataset


class NotApplicable(UserError):
    """A method cannot serve these cells as configured (e.g. its training images are gray and the
    test images colour); the harness records them as skipped with this message, which says how
    to make it apply."""


def unknown(kind: str, name: str, choices: Iterable[str]) -> UserError:
    """An error naming the bad value and every valid choice, so the fix is obvious."""
    valid = ", ".join(sorted(choices)) or "(none)"
    return UserError(f"unknown {kind} {name!r}; valid choices: {valid}")


def one_line(text: object) -> str:
    """``text`` on one line (YAML and OS errors span several): what the CLI prints."""
    return " ".join(str(text).split())

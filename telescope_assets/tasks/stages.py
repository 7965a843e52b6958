"""Per-frame work as ordered, named stages, in the manner of BANZAI's ``Stage``.

A stage is a plain function that takes the frame's work in progress (a dataclass the
pipeline defines), reads what earlier stages left on it and adds its own results. The
pipeline is the list of stages; :func:`run_stages` runs them in order. A stage that
finds the frame finished early (a subtraction with no usable kernel: a result, not an
error) returns :data:`STOP` and the rest are skipped. When a stage fails, the runner
raises :class:`StageError` naming it, so a failed frame's row says where it failed
(``catalog_one.solve_astrometry``), and :func:`telescope_assets.tasks.guarded` lets the
partition's other frames go on.

A full or read-only disk is not the frame's fault: its ``OSError`` is raised as it is,
and fails the whole step.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Sequence
from typing import TypeVar

__all__ = ["MACHINE_ERRNOS", "STOP", "StageError", "is_machine_error", "run_stages"]

W = TypeVar("W")

#: What a stage returns when the frame needs no further stages.
STOP = "stop"

#: Errors of the machine, not of a frame: out of space, over quota, read-only.
MACHINE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


def is_machine_error(exc: BaseException) -> bool:
    """Whether ``exc`` is the machine's (a full or read-only disk), not the frame's."""
    return isinstance(exc, OSError) and exc.errno in MACHINE_ERRNOS


class StageError(Exception):
    """A stage of a frame's pipeline failed; ``stage`` names it, ``__cause__`` says why."""

    def __init__(self, stage: str, cause: BaseException):
        super().__init__(f"stage {stage}: {type(cause).__name__}: {cause}")
        self.stage = stage
        self.cause = cause


def run_stages(stages: Sequence[Callable[[W], str | None]], work: W) -> W:
    """Run ``stages`` on ``work`` in order, until one returns :data:`STOP`.

    The first failure raises :class:`StageError`, naming the stage.
    """
    for stage in stages:
        try:
            outcome = stage(work)
        except Exception as exc:
            if is_machine_error(exc):
                raise
            raise StageError(stage.__name__, exc) from exc
        if outcome == STOP:
            break
    return work

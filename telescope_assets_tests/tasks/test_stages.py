"""tasks.stages: a frame's pipeline as named stages; a failure names its stage."""

import errno
from dataclasses import dataclass, field

import pytest

from telescope_assets.tasks import guarded
from telescope_assets.tasks.catalogs import CATALOG_STAGES
from telescope_assets.tasks.stages import StageError, run_stages

pytestmark = pytest.mark.fast


@dataclass
class _Work:
    done: list = field(default_factory=list)


def _first(w):
    w.done.append("first")


def _second(w):
    w.done.append("second")


def _broken(w):
    raise ValueError("no stars to fit")


def test_stages_run_in_order_on_one_work_item():
    assert run_stages([_first, _second], _Work()).done == ["first", "second"]


def test_a_failing_stage_is_named_and_stops_the_frame():
    work = _Work()
    with pytest.raises(StageError, match="stage _broken: ValueError: no stars to fit") as info:
        run_stages([_first, _broken, _second], work)
    assert info.value.stage == "_broken"
    assert isinstance(info.value.__cause__, ValueError)
    assert work.done == ["first"]  # the stages after it did not run


def test_a_full_disk_is_the_machines_error_not_a_stage_failure():
    def full(w):
        raise OSError(errno.ENOSPC, "disk full")

    with pytest.raises(OSError, match="disk full"):
        run_stages([full], _Work())


def test_guarded_rows_name_the_step_and_its_stage():
    def staged(row):
        return run_stages([_first, _broken], _Work())

    out = guarded(staged, {"frame_id": "f1", "night": "2026-03-18"})
    assert out["step"] == "staged._broken"
    assert out["reason"] == "ValueError: no stars to fit"


def test_cataloguing_has_one_stage_per_job():
    names = [s.__name__ for s in CATALOG_STAGES]
    assert names == [
        "read_frame",
        "detect",
        "seeing",
        "apertures",
        "solve_astrometry",
        "calibrate_photometry",
        "conditions",
        "write_thumbnails",
        "write_catalog",
    ]
    assert all(s.__doc__ for s in CATALOG_STAGES)


def test_a_stage_can_finish_the_frame_early():
    from telescope_assets.tasks.stages import STOP

    def finished(w):
        w.done.append("finished")
        return STOP

    assert run_stages([_first, finished, _second], _Work()).done == ["first", "finished"]

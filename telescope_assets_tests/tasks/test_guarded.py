"""tasks.guarded: one frame's error becomes a row; the machine's errors still stop the step."""

import errno

import pytest

from telescope_assets.tasks import Guarded, guarded, split_failed


def _step(row, fail=None):
    if fail is not None:
        raise fail
    return {"frame_id": row["frame_id"], "status": "catalogued"}


def test_an_error_becomes_a_failed_row_naming_step_frame_and_reason():
    row = {"frame_id": "f1", "night": "2026-03-18"}
    out = guarded(_step, row, fail=ValueError("Initial guess is outside of provided bounds"))
    assert out["status"] == "failed"
    assert (out["frame_id"], out["night"], out["step"]) == ("f1", "2026-03-18", "_step")
    assert out["reason"] == "ValueError: Initial guess is outside of provided bounds"
    assert "_step" in out["traceback"]
    # A tuple item (a frame and its reference) is named by its first element.
    assert guarded(_step, (row, {}), fail=KeyError("x"))["frame_id"] == "f1"
    done, failed = split_failed([out, guarded(_step, {"frame_id": "f2"})])
    assert [r["frame_id"] for r in done] == ["f2"]
    assert [r["frame_id"] for r in failed] == ["f1"]


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_a_full_or_read_only_disk_still_fails_the_step(code):
    with pytest.raises(OSError, match="disk"):
        guarded(_step, {"frame_id": "f1"}, fail=OSError(code, "disk"))


def test_guarded_steps_keep_their_name_for_dask():
    from dask.utils import funcname

    step = Guarded(_step)
    assert funcname(step) == "_step"  # the dashboard's task prefix
    assert step({"frame_id": "f1"}) == {"frame_id": "f1", "status": "catalogued"}
    assert step({"frame_id": "f1"}, fail=ValueError("x"))["status"] == "failed"

"""Training and registration glue (``tasks/models.py``); the models are tested in ml/."""

import sys

import pytest

from telescope_assets.tasks.models import _without_registration_chatter

pytestmark = pytest.mark.fast


def test_mlflow_registration_lines_are_dropped_and_every_other_line_kept(capsys):
    with _without_registration_chatter():
        print("Successfully registered model 'real_bogus'.", file=sys.stderr)
        print(
            "Registered model 'real_bogus' already exists. Creating a new version", file=sys.stderr
        )
        print("Created version '3' of model 'real_bogus'.", file=sys.stderr)
        print("disk full while writing the artifact", file=sys.stderr)
    assert capsys.readouterr().err == "disk full while writing the artifact\n"


def _refused_upload():
    with _without_registration_chatter():
        print("the artifact store refused the upload", file=sys.stderr)
        raise OSError("no space left")


def test_what_was_said_before_an_error_still_reaches_stderr(capsys):
    with pytest.raises(OSError, match="no space left"):
        _refused_upload()
    assert capsys.readouterr().err == "the artifact store refused the upload\n"

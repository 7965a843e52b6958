"""The examples in the package's docstrings hold (doctest), module by module.

Every module whose source shows an example (``>>>``) is found by a scan, so a new
example is run without anyone listing it here.
"""

import doctest
import importlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "telescope_assets"


def _modules_with_examples() -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if ">>> " in path.read_text():
            parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
            found.append(".".join(p for p in parts if p != "__init__"))
    return found


MODULES = _modules_with_examples()


def test_the_scan_finds_the_examples():
    assert "telescope_assets.tasks.nightly" in MODULES
    assert "telescope_assets.registry" in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_hold(name):
    module = importlib.import_module(name)
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    failed, attempted = doctest.testmod(module, optionflags=flags, verbose=False)
    assert attempted > 0, f"{name} shows '>>> ' but doctest found no example in it"
    assert failed == 0, f"{failed} of {attempted} examples in {name} fail (output above)"

import pytest

from telescope_assets.registry import RegistryError, load_registry, parse_section


def test_packaged_registry_has_four_sites_on_different_continents():
    reg = load_registry()
    assert reg.names == ["lapalma", "sidingspring", "sutherland", "tololo"]
    zones = {reg[s].timezone.split("/")[0] for s in reg.names}
    assert zones == {"Atlantic", "Australia", "Africa", "America"}
    assert any(reg[s].camera.biassec for s in reg.names)
    assert reg["lapalma"].identify_by == "prefix"
    assert reg["lapalma"].frame_type("Light Frame") == "science"
    assert reg["lapalma"].frame_type("Flat Field") == "flat"
    assert reg["lapalma"].header_map["exptime"] == "EXPOSURE"


def test_registry_file_from_environment_adds_a_telescope(tmp_path, monkeypatch):
    reg = load_registry()
    text = reg.to_yaml().replace("  tololo:", "  hanle:", 1).replace("CTIO", "IAO")
    path = tmp_path / "sites.yaml"
    path.write_text(text + "\n")
    monkeypatch.setenv("TELESCOPE_ASSETS_REGISTRY", str(path))
    new = load_registry()
    assert "hanle" in new
    assert "tololo" not in new
    assert new.identify({"OBSERVAT": "IAO"}) == "hanle"
    assert new.source == str(path)


def test_unknown_site_error_says_what_to_do():
    with pytest.raises(KeyError, match="Add an entry"):
        load_registry()["maunakea"]


def test_malformed_entries_are_rejected_with_the_site_named(tmp_path):
    reg = load_registry()
    bad = reg.to_yaml().replace("timezone: Australia/Sydney", "timezone: Mars/Olympus")
    path = tmp_path / "bad.yaml"
    path.write_text(bad)
    with pytest.raises(RegistryError, match=r"sidingspring.*Mars/Olympus"):
        load_registry(path)


def test_parse_section_is_fits_convention():
    rows, cols = parse_section("[17:528,1:520]")
    assert (rows.start, rows.stop, cols.start, cols.stop) == (0, 520, 16, 528)
    with pytest.raises(ValueError, match="FITS section"):
        parse_section("17:528")

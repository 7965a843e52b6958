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


def _entry_yaml(**changes) -> str:
    """The packaged registry with one site (tololo) changed."""
    import yaml

    data = yaml.safe_load(load_registry().to_yaml())
    data["sites"]["tololo"].update(changes)
    return yaml.safe_dump(data)


def _load(tmp_path, text):
    path = tmp_path / "sites.yaml"
    path.write_text(text)
    return load_registry(path)


def test_filters_match_without_case_and_through_aliases(tmp_path):
    reg = _load(tmp_path, _entry_yaml(filter_aliases={"Rc": "r", "sloan_g": "g"}))
    site = reg["tololo"]
    assert site.canonical_filter("R") == "r"
    assert site.canonical_filter(" rc ") == "r"
    assert site.canonical_filter("SLOAN_G") == "g"
    assert site.canonical_filter("i") is None
    with pytest.raises(RegistryError, match="maps 'Ic' to 'i'"):
        _load(tmp_path, _entry_yaml(filter_aliases={"Ic": "i"}))
    with pytest.raises(RegistryError, match="differ only in case"):
        _load(tmp_path, _entry_yaml(filters=["r", "R"]))


def test_extinction_defaults_per_band_and_is_required_otherwise(tmp_path):
    entry = _entry_yaml(filters=["g", "r", "V", "Halpha"], extinction={"Halpha": 0.09})
    reg = _load(tmp_path, entry)
    assert reg["tololo"].extinction == {"g": 0.18, "r": 0.10, "V": 0.15, "Halpha": 0.09}
    with pytest.raises(RegistryError, match="no extinction for filter 'Halpha'"):
        _load(tmp_path, _entry_yaml(filters=["g", "Halpha"], extinction={}))


def test_first_night_sets_where_the_partitions_start(tmp_path):
    assert load_registry().first_night == "2025-01-01"
    reg = _load(tmp_path, _entry_yaml(first_night="2012-02-01"))
    assert reg["tololo"].first_night == "2012-02-01"
    assert reg.first_night == "2012-02-01"
    with pytest.raises(RegistryError, match="first_night is a date"):
        _load(tmp_path, _entry_yaml(first_night="last year"))


def test_optional_camera_values_and_unknown_header_keys(tmp_path):
    import yaml

    data = yaml.safe_load(load_registry().to_yaml())
    del data["sites"]["tololo"]["camera"]["bias_level"]
    del data["sites"]["tololo"]["camera"]["dark_current"]
    reg = _load(tmp_path, yaml.safe_dump(data))
    assert reg["tololo"].camera.dark_current == 0.05
    data["sites"]["tololo"]["header_map"]["filtre"] = "FILTRE"
    with pytest.raises(RegistryError, match="unknown keys \\['filtre'\\]"):
        _load(tmp_path, yaml.safe_dump(data))


def test_precalibrated_sites_need_no_masters(tmp_path):
    from telescope_assets import tasks

    site = _load(tmp_path, _entry_yaml(precalibrated=True))["tololo"]
    assert site.precalibrated
    assert not load_registry()["tololo"].precalibrated
    prov = tasks.calibration_provenance("f1", {}, site.filters[0], True, site.precalibrated)
    assert prov["L1IDBIAS"] == prov["L1IDFLAT"] == "none"
    other = tasks.calibration_provenance("f1", {}, site.filters[0], False, True)
    assert other["PROVKEY"] != prov["PROVKEY"]
    assert tasks.calibration_provenance("f1", {}, site.filters[0], True, False) is None
    with pytest.raises(RegistryError, match="precalibrated must be true or false"):
        _load(tmp_path, _entry_yaml(precalibrated="yes"))

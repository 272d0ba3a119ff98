from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml

import immunescape as ie
from immunescape.signatures import Signature, library_path, validate

LIBRARY_FILES = sorted(library_path().glob("*.yaml"))


def test_library_is_large_and_cited():
    table = ie.signatures.list()
    assert len(table) >= 25
    assert (table["doi"].notna() | table["pmid"].notna()).all()


@pytest.mark.parametrize("path", LIBRARY_FILES, ids=lambda p: p.stem)
def test_every_file_passes_the_schema(path):
    entry = yaml.safe_load(path.read_text())
    validate(entry, where=path.name)
    assert entry["name"] == path.stem
    sig = ie.signatures.get(entry["name"])
    assert len(sig.genes) == len(set(entry["genes_up"]) | set(entry.get("genes_down", [])))


def test_schema_rejects_broken_entries():
    good = yaml.safe_load(LIBRARY_FILES[0].read_text())
    for broken in (
        {k: v for k, v in good.items() if k != "source"},
        {**good, "category": "vibes"},
        {**good, "source": {"citation": "someone"}},
        {**good, "exact": "yes"},
        {**good, "genes_up": "CD8A"},
        {**good, "extra_field": 1},
    ):
        with pytest.raises(ie.SignatureError):
            validate(broken, where="x.yaml")


REQUIRED_AXES = [
    "rloop_regulators_core",
    "ifn_type1_rooney2015",
    "cgas_sting_core",
    "tam_trem2_xue2022",
    "tam_spp1_xue2022",
    "tex_cd8_chu2023",
    "tex_inhibitory_receptors_curated",
    "apm_mariathasan2018",
    "bagaev2021_MHCI",
    "ribosomal_p_stalk_curated",
    "ifng_ayers2017",
    "tis_gep_ayers2017",
    "cytolytic_activity_rooney2015",
    "cd8_t_effector_mariathasan2018",
    "wnt_target_mariathasan2018",
    "tgfb_pan_f_tbrs_mariathasan2018",
    "bagaev2021_CAF",
    "bagaev2021_MDSC",
    "bagaev2021_Treg",
    "bagaev2021_Neutrophil_signature",
    "tan_spp1_xue2022",
    "immune_checkpoints_curated",
    "kynurenine_rosario2018",
    "adenosine_core",
    "glycolysis_rosario2018",
    "tcell_recruiting_chemokines_curated",
    "stat3_axis_core",
]


def test_required_axes_and_collections():
    names = set(ie.signatures.list().index)
    assert set(REQUIRED_AXES) <= names
    assert len(ie.signatures.collection("bagaev2021")) == 29
    assert len(ie.signatures.collection("thorsson2018")) == 5
    assert set(REQUIRED_AXES) - {"bagaev2021_Neutrophil_signature"} <= {
        s.name for s in ie.signatures.collection("immune_escape")
    }
    assert len(ie.signatures.collection("all")) == len(names)


def test_rloop_is_flagged_as_approximation_with_direction():
    sig = ie.signatures.get("rloop_regulators_core")
    assert sig.meta["exact"] is False
    assert "LOW" in sig.meta["high_means"] and "APPROXIMATION" in sig.meta["notes"]


def test_gep_carries_published_weights():
    gep = ie.signatures.get("tis_gep_ayers2017")
    assert gep.weighted and len(gep.genes) == 18
    assert gep.weights["STAT1"] == pytest.approx(0.250229)
    assert gep.genes_down == ("CD276",) and gep.weights["CD276"] < 0


def test_outdated_symbols_are_updated_and_recorded():
    sig = ie.signatures.get("tgfb_pan_f_tbrs_mariathasan2018")
    assert "CCN2" in sig.genes and "CTGF" not in sig.genes
    assert sig.meta["symbol_updates"]["CTGF"] == "CCN2"


def test_duplicate_lists_keep_both_names():
    assert ie.signatures.get("tam_bagaev2021") is ie.signatures.get("bagaev2021_Macrophages")


def test_unknown_name_suggests_closest():
    with pytest.raises(ie.SignatureError, match="Did you mean 'ifng_ayers2017'"):
        ie.signatures.get("ifng_ayers")
    with pytest.raises(ie.SignatureError, match="immune_escape"):
        ie.signatures.collection("immune_escap")


def test_load_formats_agree(tmp_path):
    expected = [Signature("cyt", ("GZMA", "PRF1")), Signature("mix", ("CD8A",), ("FOXP3",))]
    as_dict = {"cyt": ["GZMA", "PRF1"], "mix": {"up": ["CD8A"], "down": ["FOXP3"]}}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(as_dict))
    (tmp_path / "s.json").write_text(json.dumps(as_dict))
    (tmp_path / "s.gmt").write_text("cyt\tx\tGZMA\tPRF1\nmix_UP\tx\tCD8A\nmix_DN\tx\tFOXP3\n")
    for source in (as_dict, tmp_path / "s.yaml", str(tmp_path / "s.json"), tmp_path / "s.gmt"):
        loaded = ie.signatures.load(source)
        assert [(s.name, s.genes_up, s.genes_down) for s in loaded] == [
            (s.name, s.genes_up, s.genes_down) for s in expected
        ]


def test_load_long_dataframe_with_weights():
    net = pd.DataFrame(
        {"source": ["a", "a", "a", "b"], "target": ["G1", "G2", "G3", "G4"], "weight": [2.0, -1.0, 0.5, 1.0]}
    )
    a, b = ie.signatures.load(net)
    assert a.genes_up == ("G1", "G3") and a.genes_down == ("G2",) and a.weights["G2"] == -1.0
    assert b.gene_weights() == {"G4": 1.0}


def test_builtin_and_user_sets_are_one_type():
    loaded = ie.signatures.load(["ifng_ayers2017", {"mine": ["CD8A"]}])
    assert all(isinstance(s, Signature) for s in loaded)
    assert ie.signatures.load("cytolytic_activity_rooney2015, ifng_ayers2017")[1].name == "ifng_ayers2017"


def test_gmt_round_trip_keeps_signed_sets(tmp_path):
    sigs = ie.signatures.load("immune_escape")
    path = tmp_path / "lib.gmt"
    ie.signatures.to_gmt(sigs, path)
    back = {s.name: s for s in ie.signatures.load(path)}
    for sig in sigs:
        assert back[sig.name].genes_up == sig.genes_up
        assert back[sig.name].genes_down == sig.genes_down
    assert "tis_gep_ayers2017_DN" in path.read_text()


def test_yaml_round_trip_keeps_weights(tmp_path):
    path = tmp_path / "lib.yaml"
    ie.signatures.to_yaml("tis_gep_ayers2017", path)
    (back,) = ie.signatures.load(path)
    assert back.weights == ie.signatures.get("tis_gep_ayers2017").weights


def test_malformed_files_name_the_line(tmp_path):
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("a:\n  - CD8A\n b: [\n")
    with pytest.raises(ie.SignatureError, match="line 3"):
        ie.signatures.load(bad_yaml)
    bad_gmt = tmp_path / "bad.gmt"
    bad_gmt.write_text("ok\tdesc\tA\tB\nbroken_line_without_tabs\n")
    with pytest.raises(ie.SignatureError, match="line 2"):
        ie.signatures.load(bad_gmt)


@pytest.mark.parametrize(
    "body",
    [{"x": "CD8A"}, {"x": []}, {"x": {"up": ["A"], "down": ["A"]}}, {"x": {"A": "heavy"}}, {"x": [None]}],
)
def test_bad_user_sets_raise_signature_errors(body):
    with pytest.raises(ie.SignatureError):
        ie.signatures.load(body)


def test_build_script_never_deletes_or_overwrites_a_hand_written_file(tmp_path, monkeypatch):
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "scripts" / "build_signatures.py"
    if not script.exists():
        pytest.skip("not a source checkout")
    spec = importlib.util.spec_from_file_location("build_signatures", script)
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    monkeypatch.setattr(build, "OUT", tmp_path)
    (tmp_path / "mine.yaml").write_text("name: mine\n")
    assert build.write_generated({"a": {"name": "a"}, "b": {"name": "b"}}) == ["a.yaml", "b.yaml"]
    assert build.write_generated({"a": {"name": "a"}}) == ["a.yaml"]  # b is no longer generated: removed
    assert sorted(p.name for p in tmp_path.glob("*.yaml")) == ["a.yaml", "mine.yaml"]
    with pytest.raises(SystemExit, match="hand-written signature files would be overwritten: mine.yaml"):
        build.write_generated({"a": {"name": "a"}, "mine": {"name": "mine"}})
    assert (tmp_path / "mine.yaml").read_text() == "name: mine\n"

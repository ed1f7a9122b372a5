"""The committed records of the small-scale reproduction (results/small and results/small2, JSON
only) regenerate their reports, CSVs and the figures' data exactly (figs/small, figs/small2), and
the generated tables of the README and docs/."""
import json
from pathlib import Path

import pytest

from utils.report import write_report

ROOT = Path(__file__).resolve().parents[1]
RECORD = ROOT / "results" / "small"
FIGS = ROOT / "figs" / "small"


RECORDS = [(RECORD, FIGS), (ROOT / "results" / "small2", ROOT / "figs" / "small2")]


@pytest.mark.parametrize("record,figs", RECORDS, ids=["small", "small2"])
def test_record_regenerates_report_and_csvs(tmp_path, record, figs):
    text, tables, figures = write_report(record, tmp_path, figures=False)
    assert text == (figs / "report.md").read_text()
    for name in ("table2", "comparisons", "curves", "transfer", "overlap"):
        assert (tmp_path / f"{name}.csv").read_text() == (figs / f"{name}.csv").read_text(), name


def test_generated_docs_blocks_are_fresh():
    """Every generated block of README.md and docs/*.md (profile table, the records' tables)
    equals what scripts/build_docs.py writes now from the profiles and the committed records."""
    from utils.docs import BLOCK, doc_files, stale

    assert stale() == []
    names = {m.group("name") for f in doc_files() if f.is_file() for m in BLOCK.finditer(f.read_text())}
    assert {"small_table2"} <= names


@pytest.mark.parametrize("record,figs", RECORDS, ids=["small", "small2"])
def test_committed_figures_match_the_record(tmp_path, record, figs):
    """Every committed figure is regenerated from the record and plots the same data
    (figures.json: file name -> the series drawn), and no figure is left over."""
    _, _, written = write_report(record, tmp_path)
    regenerated = json.loads((tmp_path / "figures.json").read_text())
    committed = json.loads((figs / "figures.json").read_text())
    assert regenerated == committed
    assert sorted(p.name for p in written) == sorted(committed)
    assert sorted(p.name for p in figs.glob("*.png")) == sorted(committed)
    for name, data in committed.items():
        assert data, name
        png = (figs / name).read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n", name
    if record == RECORD:
        curve = committed["curve_mrpc_no_pooler.png"]
        assert curve["IMP ticket"][0][0] == 50 and "full model" in curve and "trivial baseline" in curve
    else:  # the new record: STS-B at 40-70 %, the ticket above OMP at 70 %
        curve = committed["curve_sts-b_no_pooler.png"]
        assert [x for x, _ in curve["IMP ticket"]] == [x for x, _ in curve["OMP"]] == [40, 50, 60, 70]
        assert curve["IMP ticket"][3][1] - curve["OMP"][3][1] > 60


def test_structured_figure_matches_its_record(tmp_path):
    """figs/structured_nr/speed_score.png plots what the committed no-retraining record holds."""
    from utils.docs import structured_figure

    data = json.loads(json.dumps(structured_figure("results/structured_nr", tmp_path, imp_record="results/small2")))
    committed = json.loads((ROOT / "figs" / "structured_nr" / "figures.json").read_text())
    assert {"speed_score.png": data} == committed
    assert (ROOT / "figs" / "structured_nr" / "speed_score.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    fisher = dict(committed["speed_score.png"]["fisher (raw) + rescaling, no training"])
    assert len(fisher) == 3 and all(1.2 < x < 3.0 for x in fisher)  # 30, 50, 70 %, measured speed-ups

"""The committed record of the small-scale reproduction (results/small, JSON only) regenerates
the README's tables and the figures' data exactly (figs/small)."""
import re
from pathlib import Path

from utils.figures import plot_curve
from utils.report import collect, curves, summarise, write_report

ROOT = Path(__file__).resolve().parents[1]
RECORD = ROOT / "results" / "small"
FIGS = ROOT / "figs" / "small"


def test_record_regenerates_report_and_csvs(tmp_path):
    text, tables, figures = write_report(RECORD, tmp_path, figures=False)
    assert text == (FIGS / "report.md").read_text()
    for name in ("table2", "curves", "transfer"):
        assert (tmp_path / f"{name}.csv").read_text() == (FIGS / f"{name}.csv").read_text(), name


def test_readme_shows_the_regenerated_table():
    report = (FIGS / "report.md").read_text()
    table = re.search(r"## Table 2[^\n]*\n\n[^\n]*\n\n(.*?)\n\n", report, re.S).group(1)
    assert table in (ROOT / "README.md").read_text()


def test_committed_figures_match_the_record(tmp_path):
    finished, _ = collect(RECORD)
    summary = summarise(finished)
    committed = sorted(p.name for p in FIGS.glob("curve_*.png"))
    assert committed == sorted(f"curve_{t}_{s}.png" for (t, s) in curves(summary))
    for (task, pset), entry in curves(summary).items():
        series = plot_curve(summary, task, pset, entry, tmp_path / "x.png")
        assert "IMP ticket" in series and "full model" in series and "trivial baseline" in series
        png = (FIGS / f"curve_{task}_{pset}.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and 10_000 < len(png) < 200_000

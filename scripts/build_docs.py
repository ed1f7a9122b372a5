"""Rewrite the generated blocks of README.md and docs/*.md (the profile table, the results
tables of the committed records) and the structured study's figure (figs/structured_nr), or with
--check say which blocks are stale and exit 1.

    python scripts/build_docs.py           # rewrite in place
    python scripts/build_docs.py --check   # CI: fail on a stale block
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from utils.docs import ROOT, doc_files, render_file, stale, structured_figure  # noqa: E402
from utils.io import write_text  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 if a block is stale")
    args = p.parse_args(argv)
    if args.check:
        old = stale()
        for f in old:
            print(f"stale: {f} (run python scripts/build_docs.py)")
        return 1 if old else 0
    for f in doc_files():
        if f.is_file():
            text = f.read_text()
            new = render_file(text)
            if new != text:
                write_text(f, new)
                print(f"rewrote {f}")
    structured_figure("results/structured_nr", ROOT / "figs" / "structured_nr", imp_record="results/small2")  # the docs' own figure
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The slim record of a folder of runs: what regenerates its report on another machine (JSON
records, mask provenance, the measured mask overlaps, chosen tickets gzipped), no weights."""
import gzip
import shutil
from pathlib import Path

from utils.errors import UserError
from utils.io import atomic_write, read_json, write_json
from utils.overlap import STORE
from utils.report import measure_overlaps
from utils.runs import collect
from utils.tables import level, summarise

SLIM_FILES = ("args.json", "results.json", "complete.json", "failed.json", "mask_provenance.json", "mask_sparsity.json",
              "shuffle_weight_provenance.json")


def check_slim_target(src, dst, flag="--slim_copy"):
    """Refuse, writing nothing, a slim-copy folder ``dst`` that is, lies inside, or holds the folder of
    runs ``src``: the copy would write over the records it reads, or leave a second copy of every run
    where the next report of the folder finds it (each run counted twice)."""
    runs, target = Path(src).resolve(), Path(dst).resolve()
    if target == runs:
        why = f"is the folder of runs {src}: the copy would write each record over itself"
    elif runs in target.parents:
        why = (f"lies inside the folder of runs {src}: the next report of {src} would find the copy and count "
               "every run twice")
    elif target in runs.parents:
        why = (f"holds the folder of runs {src}: the copy would sit beside the runs it copies, and a report of "
               f"{dst} would count every run twice")
    else:
        return
    raise UserError(f"{flag} {dst} {why}; give a folder outside it")


def slim_copy(src, dst, mask_levels=()):
    """Copy the slim record of every run under ``src`` to ``dst`` (same relative layout): the
    JSON files that say what each run is and what it scored, and the provenance and sparsity
    reports of masks; no weights or logs. ``mask_levels`` (sparsities in percent): also the IMP
    tickets at those sparsities (a structured IMP run's at every sparsity: they are small),
    gzipped beside their records (``mask.pt.gz``, about 1/8 of the bool file), so fine-tunes
    still to run need no new IMP run on another machine (the reproduction recipes unpack them).
    Returns the number of files copied."""
    src, dst = Path(src), Path(dst)
    n = _write_overlaps(src, dst)
    for path in sorted(src.rglob("*.json")):
        if path.name in SLIM_FILES or path.name.endswith("_provenance.json"):
            target = dst / path.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
            n += 1
    levels = {int(v) for v in mask_levels}
    for results in sorted(src.rglob("results.json")) if levels else []:
        record = read_json(results) or {}
        # a structured mask packs to about 40 kB (MiniLM-L6): every event of a structured run is kept
        every = record.get("structure", "unstructured") != "unstructured"
        for m in record.get("masks", []) or []:
            mask = results.parent / str(m.get("path", ""))
            if (every or level(m.get("sparsity")) in levels) and mask.is_file():
                target = dst / mask.relative_to(src)
                write_gz(mask, target.with_name(target.name + ".gz"))
                n += 1
    return n


def write_gz(src, gz):
    """``src`` gzipped into ``gz`` (atomic), with no name or time in the header: same file, same bytes."""
    def write(tmp):
        with open(src, "rb") as f_in, open(tmp, "wb") as raw, \
                gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as f_out:
            shutil.copyfileobj(f_in, f_out)
    atomic_write(gz, write)


def _write_overlaps(src, dst):
    """The overlaps of the report's masks, measured from the mask files under ``src`` (and
    those its own record kept), into ``dst``'s record: a report from the record alone shows
    them. Returns the number of files written (0 or 1)."""
    runs = collect(src)
    _, store = measure_overlaps(src, runs, summarise(runs.finished))
    if not store.pairs:
        return 0
    write_json(dst / STORE, store.record())
    return 1

"""The recipes' queue of runs: skip what finished, lock what runs, stage after stage.

A :class:`Run` is one shell command with the file whose presence means it finished (its
``marker``), its ``log`` and its ``stage``. :func:`run_queue` goes through the runs in order:

* a run whose marker exists is skipped ("run i/N: finished, skipped (MARKER)");
* a run that left a resumable state (``resume/state.pt`` beside its marker) gets ``--resume``;
* under ``dry_run`` the command is printed, as one copy-pasteable line;
* otherwise the run takes ``LOG.lock`` (``flock``): a second queue of the same recipe started
  beside this one skips a run it finds locked and takes the next one;
* a stage starts when every run of the stages before it has ended, here or in another queue
  (its lock), so masks exist before they are fine-tuned;
* up to ``jobs`` runs go side by side (``OMP_NUM_THREADS`` split between them).

It prints what it does as it goes and returns 0 when every run finished, else 1 (after one
``error:`` line). Also a command line, for the shell recipes' ``run_queue``::

    python utils/queue.py --nul FILE [--dry-run]    # the shell API's file (scripts/recipe_lib.sh)
    python utils/queue.py unpack DIR                # unpack_masks
"""
import fcntl
import gzip
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Run:
    stage: int
    marker: str
    log: str
    cmd: str


def _resumable(run):
    folder = Path(run.marker).parent / "resume"
    return (folder / "state.pt").is_file() or (folder / "state.prev.pt").is_file()


def _say(*lines, err=False):
    stream = sys.stderr if err else sys.stdout
    for line in lines:
        print(line, file=stream, flush=True)


class _Queue:
    def __init__(self, runs, dry_run, jobs):
        self.runs, self.dry_run, self.jobs = list(runs), dry_run, max(1, jobs)
        self.n = len(self.runs)
        self.active = {}  # index -> (process, lock fd, start time, log file)
        self.failed = False

    def start(self, i):
        run, label = self.runs[i], f"run {i + 1}/{self.n}"
        cmd = run.cmd.replace("@RUN@", str(i + 1))
        if os.path.exists(run.marker):
            return _say(f"{label}: finished, skipped ({run.marker})")
        if _resumable(run):
            cmd += " --resume"  # a killed run continues from its latest state
        if self.dry_run:
            return _say(f"{label}: {cmd}")
        Path(run.log).parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(run.log + ".lock", os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return _say(f"{label}: running in another queue, skipped")
        if os.path.exists(run.marker):  # finished by another queue since the check above
            os.close(fd)
            return _say(f"{label}: finished, skipped ({run.marker})")
        _say(f"{label}: {cmd}   (log: {run.log})")
        log = open(run.log, "w")
        proc = subprocess.Popen(["bash", "-c", cmd], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        self.active[i] = (proc, fd, time.monotonic(), log)

    def reap(self, block):
        """Collect finished runs (``block``: wait for at least one)."""
        while self.active:
            for i, (proc, fd, start, log) in list(self.active.items()):
                if proc.poll() is None:
                    continue
                log.close()
                os.close(fd)
                del self.active[i]
                label, took = f"run {i + 1}/{self.n}", int(time.monotonic() - start)
                if proc.returncode == 0:
                    _say(f"{label}: done in {took} s")
                else:
                    _say(f"{label}: FAILED after {took} s; see {self.runs[i].log}", err=True)
                    self.failed = True
                return
            if not block:
                return
            time.sleep(0.05)

    def await_earlier(self, upto):
        """Wait for every unfinished run before ``upto`` that another queue holds (its lock)."""
        for run in self.runs[:upto]:
            lock = run.log + ".lock"
            if os.path.exists(run.marker) or not os.path.exists(lock):
                continue
            fd = os.open(lock, os.O_RDONLY)
            try:
                fcntl.flock(fd, fcntl.LOCK_SH)  # blocks while another queue runs it
            finally:
                os.close(fd)

    def run(self):
        todo = sum(not os.path.exists(r.marker) for r in self.runs)
        _say(f"{self.n} runs, {todo} to do ({self.n - todo} finished)")
        stage = None
        for i, run in enumerate(self.runs):
            if run.stage != stage:  # next stage: the runs before it first, here and elsewhere
                while self.active:
                    self.reap(block=True)
                if not self.dry_run:
                    self.await_earlier(i)
                stage = run.stage
            while len(self.active) >= self.jobs:
                self.reap(block=True)
            self.start(i)
            if self.jobs == 1:
                while self.active:
                    self.reap(block=True)
        while self.active:
            self.reap(block=True)
        return self.finish()

    def finish(self):
        if self.failed:
            _say("error: some runs failed (see their logs); re-run the same command to retry only those", err=True)
            return 1
        if not self.dry_run:  # runs another queue held: wait for them, then check they finished
            self.await_earlier(self.n)
            left = sum(not os.path.exists(r.marker) for r in self.runs)
            if left:
                _say(f"error: {left} run(s) held by another queue did not finish; re-run the same command to "
                     "retry them", err=True)
                return 1
        return 0


def run_queue(runs, dry_run=False, jobs=1):
    """Run (or, with ``dry_run``, print) ``runs``; 0 when all finished, else 1. With ``jobs`` > 1
    each run gets ``OMP_NUM_THREADS`` = cores / jobs unless it is set."""
    if jobs > 1 and not dry_run:
        os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // jobs)))
    return _Queue(runs, dry_run, jobs).run()


def unpack_masks(folder):
    """Unpack the IMP tickets a committed slim record carries (``mask.pt.gz``, written by
    ``report.py --slim_masks``) where the mask itself is missing (never over an existing one)."""
    for gz in sorted(Path(folder).rglob("mask.pt.gz")):
        target = gz.with_suffix("")
        if target.exists():
            continue
        part = target.with_name(target.name + ".part")
        part.write_bytes(gzip.decompress(gz.read_bytes()))
        os.replace(part, target)


def read_nul(path):
    """Runs from the shell API's file (scripts/recipe_lib.sh): stage, marker, log, command, NUL-separated."""
    fields = Path(path).read_bytes().decode().split("\0")[:-1]
    return [Run(int(fields[i]), *fields[i + 1:i + 4]) for i in range(0, len(fields), 4)]


def main(argv):
    if argv and argv[0] == "unpack":
        unpack_masks(argv[1])
        return 0
    jobs = os.environ.get("JOBS", "") or "1"
    if not (jobs.isdigit() and int(jobs) >= 1):
        print(f"error: JOBS must be a positive whole number, not '{jobs}'", file=sys.stderr)
        return 2
    return run_queue(read_nul(argv[1]), dry_run="--dry-run" in argv, jobs=int(jobs))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Running the stages: up to `jobs` at once, each once the stage it starts from has finished.

Every command, exit status, wall time and the commit of the code that ran it go to stages.json as
they happen, so a run cut off at any moment says what finished; `--skip_existing` later resumes
it. A failed stage stops new launches (the running ones finish: their work is kept); past the
launch limit nothing starts, and at the time limit the running stages are stopped, so that the
caller can still write the results of the finished ones inside a hard wall-clock limit.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from .plan import Replication, Stage

__all__ = ["StageFailedError", "StageScheduler", "format_seconds", "load_stage_log", "run_stages", "source_commit"]

STAGE_LOG = "stages.json"


class StageFailedError(Exception):
    """A stage exited with an error; the finished stages are kept and `--skip_existing` resumes from them."""


def load_stage_log(output_dir: Path) -> dict:
    """stages.json of a run folder ({} before the first stage): stage name -> command, status, wall time, commit."""
    path = Path(output_dir) / STAGE_LOG
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def source_commit(repository: Path) -> str | None:
    """The commit of the code the stages run, "+dirty" when tracked files have uncommitted changes; None
    outside a git checkout. Recorded per stage: a run that continues across commits says which stage
    ran which code."""
    def git(*command: str) -> str:
        return subprocess.run(["git", "-C", str(repository), *command], capture_output=True, text=True, check=True).stdout.strip()

    try:
        head = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+dirty" if dirty else "")


class StageScheduler:
    """One invocation's run of `stages` (see the module docstring); `on_done(stage)` follows each success."""

    def __init__(self, stages: list[Stage], replication: Replication, on_done: Callable[[Stage], None] | None = None):
        args = replication.args
        self.stages, self.python, self.skip_existing = stages, replication.python, args.skip_existing
        self.jobs, self.launch_limit, self.time_limit = args.jobs, args.launch_limit, args.time_limit
        self.out = replication.output_dir
        self.on_done = on_done or (lambda stage: None)
        self.record = load_stage_log(self.out)
        self.commit = source_commit(replication.recipes_dir)
        self.env = dict(os.environ)
        if self.jobs > 1:
            self.env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // self.jobs)))
        self.position = {stage.name: index for index, stage in enumerate(stages, 1)}
        self.pending = list(stages)
        self.done: set[str] = set()
        self.running: dict[str, tuple[Stage, subprocess.Popen, float, object]] = {}
        self.failed: list[str] = []
        self.start = time.perf_counter()
        self.progress = _Progress(self.running, self.done, self.start, len(stages), args.progress_every if self.jobs > 1 else 0)

    # ------------------------------------------------------------------ helpers
    def prefix(self, stage: Stage) -> str:
        return f"[{self.position[stage.name]}/{len(self.stages)}] {stage.name}"

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def save(self) -> None:
        (self.out / STAGE_LOG).write_text(json.dumps(self.record, indent=2) + "\n", encoding="utf-8")

    def may_launch(self) -> bool:
        return self.launch_limit is None or self.elapsed() < self.launch_limit

    def ready(self) -> Stage | None:
        return next((s for s in self.pending if s.needs is None or s.needs in self.done or s.needs not in self.position), None)

    # ------------------------------------------------------------------ one stage
    def launch(self, stage: Stage) -> None:
        self.pending.remove(stage)
        if self.skip_existing and stage.is_complete():
            previous = self.record.get(stage.name, {})
            print(f"{self.prefix(stage)}: outputs exist in {stage.output_dir}, skipped "
                  f"(wall time of the run that made them: {format_seconds(previous.get('wall_time_seconds'))})", flush=True)
            self.record[stage.name] = {**previous, "skipped_at_last_invocation": True}
            self.save()
            self.done.add(stage.name)
            return
        command = stage.command(self.python)
        log = None
        if self.jobs > 1:
            log = open(self.out / "logs" / f"{stage.name}.log", "a", encoding="utf-8")  # noqa: SIM115 (closed in finish)
            print(f"{self.prefix(stage)}: {shlex.join(command)}  (output: {log.name})", flush=True)
        else:
            print(f"{self.prefix(stage)}: {shlex.join(command)}", flush=True)
        process = subprocess.Popen(command, env=self.env, stdout=log, stderr=subprocess.STDOUT if log else None)
        self.running[stage.name] = (stage, process, time.perf_counter(), log)

    def finish(self, name: str, **extra) -> tuple[Stage, subprocess.Popen, float]:
        """Close the stage's log and record its command, exit status, wall time and commit."""
        stage, process, started, log = self.running.pop(name)
        if log is not None:
            log.close()
        wall = time.perf_counter() - started
        self.record[stage.name] = {
            "command": shlex.join(stage.command(self.python)),
            "wall_time_seconds": round(wall, 1),
            "returncode": process.returncode,
            "finished_at": time.strftime("%Y-%m-%d %H:%M:%S"),
            "commit": self.commit,
            "skipped_at_last_invocation": False,
            **extra,
        }
        return stage, process, wall

    def stop_all(self) -> None:
        """The time limit: stop what runs, keep what finished."""
        _stop([process for _, process, _, _ in self.running.values()])
        for name in list(self.running):
            stage, _, _ = self.finish(name, stopped=f"time limit ({format_seconds(self.time_limit)})")
            print(f"{self.prefix(stage)}: STOPPED at the time limit of {format_seconds(self.time_limit)}", flush=True)
        self.save()

    def settle(self, name: str) -> None:
        """A stage exited: record it, then either count it done or stop new launches."""
        stage, process, wall = self.finish(name, **({"threads": self.env["OMP_NUM_THREADS"], "parallel_jobs": self.jobs}
                                                    if self.jobs > 1 else {}))
        self.save()
        # evaluate.py exits 3 when a gradient-masking check failed: the report exists and says so.
        if process.returncode != 0 and not (stage.kind == "eval" and stage.is_complete()):
            self.failed.append(f"{stage.name} (exit status {process.returncode})")
            log = self.out / "logs" / f"{stage.name}.log"
            print(f"{self.prefix(stage)}: FAILED (exit status {process.returncode})"
                  + (f"; its output is in {log}" if self.jobs > 1 else "")
                  + (f"; waiting for {', '.join(self.running)} to finish" if self.running else ""), flush=True)
            return
        self.done.add(stage.name)
        self.on_done(stage)
        print(f"{self.prefix(stage)}: done in {format_seconds(wall)} (elapsed {format_seconds(self.elapsed())})", flush=True)

    # ------------------------------------------------------------------ the loop
    def run(self) -> dict:
        self.out.mkdir(parents=True, exist_ok=True)
        if self.jobs > 1:
            (self.out / "logs").mkdir(exist_ok=True)
        while self.pending or self.running:
            while not self.failed and len(self.running) < self.jobs and self.may_launch():
                stage = self.ready()
                if stage is None:
                    break
                self.launch(stage)
            if not self.running:
                if self.pending and self.may_launch() and not self.failed:
                    # only stages whose input stage is not planned and not done: nothing can start
                    raise ValueError(f"stages {[s.name for s in self.pending]} wait for stages that did not run.")
                break
            deadline = None if self.time_limit is None else self.start + self.time_limit
            finished = _wait_any(self.running, deadline, self.progress.tick)
            if finished is None:
                self.stop_all()
                break
            self.settle(finished)
        if self.failed:
            raise StageFailedError(f"stage {', '.join(self.failed)} failed; fix it and rerun with --skip_existing to keep "
                               "the finished stages.")
        left = [stage for stage in self.pending if not stage.is_complete()]
        for stage in left:
            self.record[stage.name] = {"not_started": f"launch limit ({format_seconds(self.launch_limit)})"}
        if left:
            print(f"Not started (launch limit of {format_seconds(self.launch_limit)}): {', '.join(s.name for s in left)}",
                  flush=True)
            self.save()
        return self.record


def run_stages(stages: list[Stage], replication: Replication, on_done: Callable[[Stage], None] | None = None) -> dict:
    """Run (or skip) `stages` (see `StageScheduler`); returns the stage log as saved in stages.json."""
    return StageScheduler(stages, replication, on_done).run()


class _Progress:
    """With several jobs, a line every `every` seconds: which stages run, for how long, and their logs' last line."""

    def __init__(self, running: dict, done: set[str], start: float, total: int, every: float) -> None:
        self.running, self.done, self.start, self.total, self.every = running, done, start, total, every
        self.last = start

    def tick(self) -> None:
        now = time.perf_counter()
        if not self.every or now - self.last < self.every:
            return
        self.last = now
        parts = []
        for name, (_, _, started, log) in self.running.items():
            tail = _last_line(Path(log.name)) if log is not None else ""
            parts.append(f"{name} {format_seconds(now - started)}" + (f" [{tail}]" if tail else ""))
        print(f"[{format_seconds(now - self.start)}] {len(self.done)} of {self.total} stages done; running: "
              + "; ".join(parts), flush=True)


def _last_line(path: Path, limit: int = 100) -> str:
    """The last non-empty line of a log, progress bars' carriage returns counted as line ends."""
    try:
        with open(path, "rb") as handle:
            handle.seek(max(0, path.stat().st_size - 4096))
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    lines = [line.strip() for line in text.replace("\r", "\n").split("\n") if line.strip()]
    return lines[-1][:limit] if lines else ""


def _stop(processes: list[subprocess.Popen], grace: float = 15.0) -> None:
    """SIGTERM to every process, then SIGKILL to those still running after `grace` seconds."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
    deadline = time.perf_counter() + grace
    for process in processes:
        try:
            process.wait(timeout=max(0.0, deadline - time.perf_counter()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_any(running: dict, deadline: float | None = None, tick=None) -> str | None:
    """The name of the first running stage to exit (polling: subprocess has no portable wait-any), or None
    once `deadline` (a time.perf_counter() value) has passed."""
    while True:
        for name, (_, process, _, _) in running.items():
            if process.poll() is not None:
                return name
        if deadline is not None and time.perf_counter() >= deadline:
            return None
        if tick is not None:
            tick()
        time.sleep(0.5)

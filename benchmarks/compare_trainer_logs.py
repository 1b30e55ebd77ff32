"""Does a rerun reproduce a committed training run? Compare two trainer_state.json log histories entry by entry.

    python benchmarks/compare_trainer_logs.py docs/results/cpu-v2/pretrain-mae/trainer_state.json \
        <rerun>/checkpoint-382/trainer_state.json --json check.json

Every logged value (loss, gradient norm, learning rate, loss parts) of every step both files logged is
compared exactly: a rerun on another machine that matches to the last bit through a whole epoch
trains the same model, so results paired against the committed run's per-sample files compare like
with like. Steps only one file logged (a rerun stopped early) are counted, not compared. Wall-clock
values (`train_runtime`, `*_per_second`, which the end-of-training entry carries) are left out:
they measure the machine, not the run.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _is_timing(name: str) -> bool:
    return name.endswith("_runtime") or name.endswith("_per_second")


def _entries(path: Path) -> dict[tuple[int, bool], dict]:
    history = json.loads(Path(path).read_text(encoding="utf-8"))["log_history"]
    return {(entry["step"], "loss" in entry): entry for entry in history}


def compare_log_histories(first: Path, second: Path) -> dict:
    """Per shared logged step: identical or not, and the largest relative difference of any value."""
    a, b = _entries(first), _entries(second)
    shared = sorted(set(a) & set(b))
    rows = []
    for key in shared:
        names = sorted(n for n in set(a[key]) & set(b[key]) if not _is_timing(n))
        numeric = [n for n in names if isinstance(a[key][n], (int, float)) and isinstance(b[key][n], (int, float))]
        worst = max((abs(a[key][n] - b[key][n]) / max(abs(a[key][n]), 1e-30) for n in numeric), default=0.0)
        rows.append({"step": key[0], "identical": all(a[key][n] == b[key][n] for n in names),
                     "max_relative_difference": worst, "values_compared": len(names)})
    return {"first": str(first), "second": str(second), "shared_entries": len(rows),
            "identical_entries": sum(row["identical"] for row in rows),
            "only_in_first": len(set(a) - set(b)), "only_in_second": len(set(b) - set(a)), "entries": rows}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("first", type=Path)
    parser.add_argument("second", type=Path)
    parser.add_argument("--json", type=Path, default=None)
    options = parser.parse_args(argv)
    result = compare_log_histories(options.first, options.second)
    for row in result["entries"]:
        print(f"step {row['step']:6d}: {'identical' if row['identical'] else 'DIFFERENT'} "
              f"({row['values_compared']} values, largest relative difference {row['max_relative_difference']:.3g})")
    print(f"{result['identical_entries']} of {result['shared_entries']} shared log entries identical; "
          f"{result['only_in_first']} only in the first file, {result['only_in_second']} only in the second")
    if options.json:
        options.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result


if __name__ == "__main__":
    main()

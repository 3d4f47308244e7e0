"""`gpucluster sim --from-report REPORT_DIR [--out FILE]`: write a scenario from a report folder's recording (built
by bundle/to_scenario.py) with each node's recorded outputs beside it, and load it back through the scenario loader.

This is the command line joining the two sides, as the `gpucluster` console script does: the simulated cluster itself
never imports the plugin, it only reads the YAML and output files written here."""
from __future__ import annotations

import sys
from pathlib import Path

import yaml

EXIT_USAGE = 4              # as pytest's usage error and `gpucluster sim` without its extra


def write(report_dir: Path, out: Path | None) -> int:
    from ..bundle.replay import Recording, RecordingError
    from ..bundle.to_scenario import build
    from .scenario import ScenarioError, load_scenario

    if not report_dir.is_dir():
        print(f"gpucluster sim: --from-report {report_dir}: no such folder (expected a report folder, "
              "reports/<timestamp>/, holding recording/)", file=sys.stderr)
        return EXIT_USAGE
    try:
        recording = Recording.load(report_dir)
        run_id = str(recording.index.get("run_id") or report_dir.name)
        out = out or Path(f"replay-{run_id}.yaml")
        built = build(recording, f"{out.stem}-outputs")
    except (RecordingError, ValueError) as exc:
        print(f"gpucluster sim: --from-report {report_dir}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    out.parent.mkdir(parents=True, exist_ok=True)
    for rel, text in built.files.items():
        path = out.parent / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8", newline="")
    out.write_text(yaml.safe_dump(built.scenario, sort_keys=False, width=120), encoding="utf-8")
    try:
        scenario = load_scenario(out)
    except ScenarioError as exc:
        print(f"gpucluster sim: the scenario built from {report_dir} does not load ({exc}); it is kept at {out} to "
              "edit", file=sys.stderr)
        return EXIT_USAGE
    replayed = sum(len(o.tool_output) for g in scenario.nodes for o in g.node_outputs.values())
    print(f"gpucluster sim: wrote {out}: {len(scenario.expand_nodes())} node(s) of run {run_id}, {replayed} recorded "
          f"output(s) under {out.parent / (out.stem + '-outputs')}")
    print(f"gpucluster sim: run it with: pytest suites --sim {out}  (or gpucluster sim --scenario {out})")
    for gap in built.gaps:
        print(f"gpucluster sim: not taken from the recording: {gap}", file=sys.stderr)
    return 0

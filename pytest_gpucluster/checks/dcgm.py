"""Judge of `dcgmi diag -r <level> -j`: every test of the level ran (pass or warn) on every GPU the pod held, none
failed, and dcgmi's exit status agrees with its JSON (pure: parsed result in, Verdict out)."""
from __future__ import annotations

from typing import Any, Mapping

from pytest_gpucluster.checks.verdict import Criterion, Verdict
from pytest_gpucluster.parsers.dcgm_diag import DcgmDiagResult, DcgmTestResult
from pytest_gpucluster.parsers.nvidia_smi_model import SmiGpu

ERRORS_DOC = "https://docs.nvidia.com/datacenter/dcgm/latest/reference/diagnostics/errors.html"
# The tests each run level always includes (DCGM user guide, "Run Levels"; dcgmi diag reference: 1 quick =
# deployment checks, 2 medium adds memory and pcie, 3 long adds the diagnostic and targeted stress/power plugins,
# 4 xlong adds memtest). SKU-dependent plugins (memory_bandwidth, pulse_test, nvbandwidth) are required only where
# DCGM lists them. The 3.x JSON names the level-1 checks one by one in the Deployment category; they count as
# `software`.
LEVEL_TESTS: dict[int, tuple[str, ...]] = {1: ("software",), 2: ("software", "memory", "pcie")}
LEVEL_TESTS[3] = LEVEL_TESTS[2] + ("diagnostic", "targeted_stress", "targeted_power")
LEVEL_TESTS[4] = LEVEL_TESTS[3] + ("memtest",)
_ALIASES = {"gpu_memory": "memory"}


def canonical(result: DcgmTestResult) -> str:
    """`software` for the Deployment checks (4.x `software`, 3.x `Denylist`, `Persistence Mode`, ...), else the
    test name in lower case with underscores (3.x `GPU Memory` -> `memory`, `Targeted Stress` -> `targeted_stress`)."""
    if result.category.strip().lower() in ("deployment", "software"):
        return "software"
    name = result.test.strip().lower().replace(" ", "_").replace("-", "_")
    return _ALIASES.get(name, name)


def _label(index: int | None, gpus: Mapping[int, SmiGpu]) -> str:
    g = gpus.get(index) if index is not None else None
    if index is None:
        return "all GPUs"
    return f"GPU {index} ({g.uuid or 'no UUID'}, bus {g.bus_id})" if g else f"GPU {index}"


def _why(r: DcgmTestResult) -> str:
    said = "; ".join(r.warnings + r.info)
    return said or "DCGM gave no reason"


def dcgm(subject: str, parsed: DcgmDiagResult | None, level: int, duration_s: float | None, rc: int,
         problem: str | None, held: int, gpus: Mapping[int, SmiGpu] | None = None) -> Verdict:
    """Every test of `dcgmi diag -r <level> -j` passed or warned on each of the `held` GPUs (DCGM entity ids
    0..held-1: inside the container NVML enumerates only the pod's GPUs); a failure fails with DCGM's message; a
    skip, a test not run, or a GPU without a result is not shown; a non-zero exit with nothing failed or warned is a
    contradiction (dcgmi exits non-zero only for errors it recorded: dcgmi/Diag.cpp GetFailureResult)."""
    names = gpus or {}
    crits = (Criterion("dcgmi diag duration", round(duration_s, 1), "s"),) if duration_s is not None else ()
    facts: dict[str, Any] = {"dcgmi diag level": level, "dcgmi diag exit code": rc,
                             "dcgmi diag duration": f"{duration_s:.0f} s" if duration_s is not None else "unknown"}
    if parsed is None:
        return Verdict.failed(subject, f"`dcgmi diag -r {level} -j` to print its JSON result",
                              f"{problem or 'no output'} (exit code {rc})",
                              "Raw output is attached. Check that the DCGM image runs on the node (nv-hostengine "
                              "needs the GPUs the pod holds) and that the driver is loaded (`nvidia-smi` on the node).",
                              summary="DCGM diagnostics did not produce a result", criteria=crits, facts=facts)
    facts.update({"DCGM version": parsed.dcgm_version, "driver (DCGM)": parsed.driver_version,
                  "tests": parsed.tests()})
    warned = parsed.with_status("warn")
    if warned:
        facts["DCGM warnings"] = [f"{r.test} on {_label(r.entity_id, names)}: {_why(r)}" for r in warned]
    if parsed.runtime_error:
        return Verdict.failed(subject, f"`dcgmi diag -r {level}` to complete", f"runtime error: "
                              f"{parsed.runtime_error}", "Read nv-hostengine.log / nvvs.log in the DCGM pod.",
                              summary="DCGM diagnostics failed", criteria=crits, facts=facts)
    failed = parsed.with_status("fail", "unknown")
    if failed:
        problems = [f"{r.test} FAILED on {_label(r.entity_id, names)}: {'; '.join(r.warnings) or r.status}"
                    + (f" (DCGM error id {', '.join(map(str, r.error_ids))})" if r.error_ids else "")
                    for r in failed]
        return Verdict.failed(subject, f"every `dcgmi diag -r {level}` test to pass on every GPU", "; ".join(problems),
                              "Act on DCGM's message for the named GPU: a hardware failure (memory, pcie, diagnostic, "
                              "targeted stress) means drain the node and replace the instance; a software/config "
                              f"failure (persistence mode, driver, inforom) is fixed on the node. See {ERRORS_DOC}",
                              summary="DCGM diagnostics failed", criteria=crits, facts=facts)
    if rc != 0 and not warned:
        return Verdict.failed(subject, f"`dcgmi diag -r {level}` to exit 0 when its JSON reports every test passed",
                              f"exit code {rc} while the JSON lists no failure and no warning: the result contradicts "
                              "itself and cannot be taken as a pass",
                              "Read nv-hostengine.log and nvvs.log in the DCGM pod (run it with --gpucluster-keep) and "
                              "rerun `dcgmi diag`; a DCGM/driver mismatch or a diagnostic killed part-way gives this.",
                              summary="DCGM diagnostics contradict themselves", criteria=crits, facts=facts)
    by_test: dict[str, list[DcgmTestResult]] = {}
    for r in parsed.results:
        by_test.setdefault(canonical(r), []).append(r)
    wanted = list(dict.fromkeys(list(LEVEL_TESTS.get(level, LEVEL_TESTS[2])) + list(by_test)))
    missing: list[str] = []
    for test in wanted:
        results = by_test.get(test, [])
        if not results:
            missing.append(f"{test} did not run (not in DCGM's result)")
            continue
        for r in results:
            if r.status not in ("pass", "warn"):
                missing.append(f"{r.test} {r.status.upper()} on {_label(r.entity_id, names)}: {_why(r)}")
        covered = {r.entity_id for r in results}       # None: one result for all GPUs (2.x/3.x tables)
        if None not in covered:
            absent = [i for i in range(held) if i not in covered]
            if absent:
                missing.append(f"{test} has no result for {', '.join(_label(i, names) for i in absent)}")
    ran_results = sum(1 for r in parsed.results if r.status in ("pass", "warn"))
    facts["GPUs held by the pod"] = held
    if missing:
        return Verdict.not_shown(subject, f"not every level-{level} test ran on every one of the {held} GPUs: "
                                 + "; ".join(missing),
                                 "A skip carries DCGM's reason above; level 2+ tests need the GPUs idle and allocated "
                                 "to the DCGM pod, and SKU support (dcgmi diag reference, 'Feature Availability by GPU "
                                 "Class'). Rerun with a level the GPUs support, or set `health: {dcgm_level: N}`.",
                                 criteria=crits, facts=facts)
    return Verdict.passed(subject, f"every dcgmi diag -r {level} test passes on each of the {held} GPUs",
                          f"{len(wanted)} tests ({', '.join(wanted)}), {ran_results} results passed"
                          + (f" ({len(warned)} with warnings)" if warned else "")
                          + f" in {facts['dcgmi diag duration']}",
                          criteria=crits, facts=facts)

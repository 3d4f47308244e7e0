"""The node-by-check grid, the check areas, the evidence folder and the headline plots, on plain CheckResults."""
from __future__ import annotations

import gzip
import re
from pathlib import Path

from pytest_gpucluster.report import areas, grid, headline
from pytest_gpucluster.report.evidence_files import EvidenceFolder, check_text, file_name, summarise
from pytest_gpucluster.report.summary import CheckResult


def check(nodeid: str, node: str | None = None, outcome: str = "passed", itype: str = "p5.48xlarge",
          zone: str = "us-west-2a", **kw: object) -> CheckResult:
    nodes = node.split("+") if node else []
    return CheckResult(nodeid, outcome=outcome, node=node, instance_type=itype if node else None, zone=zone,
                       nodes=nodes, **kw)  # type: ignore[arg-type]


def fleet(n: int, bad: dict[str, str] | None = None, itype: str = "p5.48xlarge", net: int = 0) -> list[CheckResult]:
    bad = bad or {}
    out = []
    for i in range(n):
        node = f"ip-10-{net}-{i // 250}-{i % 250}"
        for test in ("test_gpu_visibility.py::test_nvidia_smi_sees_every_gpu", "test_taints.py::test_gpu_node_carries_gpu_taint",
                     "test_efa.py::test_fi_info_lists_every_efa_device"):
            outcome = bad.get(node, "passed") if "visibility" in test else "passed"
            out.append(check(f"suites/{test}[{node}/{itype}]", node, outcome, itype))
    return out


def link(c: CheckResult, node: str | None) -> str:
    return f"#{c.name}" if c.outcome != "passed" else file_name(node)


def test_areas_come_from_module_and_test_name_and_unknown_tests_are_other():
    assert areas.area_of("suites/test_gpu_visibility.py::test_nvidia_smi_sees_every_gpu[a/p5]") == "visibility"
    assert areas.area_of("suites/test_gpu_visibility.py::test_pod_with_one_gpu_sees_exactly_one[a/p5]") == "isolation"
    assert areas.area_of("suites/test_nccl.py::test_all_reduce_is_correct_on_one_node[a/p5]") == "NCCL single"
    assert areas.area_of("suites/test_nccl.py::test_bus_bandwidth_across_nodes_meets_floor[a+b/p5]") == "NCCL multi"
    assert areas.area_of("suites/test_node_health.py::test_xid_errors[a/p5]") == "node health"
    assert areas.area_of("suites/test_custom_example.py::test_every_node_is_ready") == "other"
    assert areas.AREAS[-1] == "other"


def test_failing_node_is_the_first_row_and_links_to_its_check():
    page = grid.grid_block(fleet(20, {"ip-10-0-0-7": "failed"}), link, file_name)
    rows = re.findall(r'<tr class="gc-([a-z-]+)"><th[^>]*>(?:<a href="[^"]*">)?([^<]+)', page)
    assert rows[0] == ("fail", "ip-10-0-0-7")
    assert '<td class="gc-f"><a href="#test_nvidia_smi_sees_every_gpu[ip-10-0-0-7/p5.48xlarge]"' in page
    assert "19 p5.48xlarge nodes in us-west-2a: all pass" in page
    assert "20 nodes: 1 failing, 0 incomplete, 19 passing" in page


def test_passing_nodes_fold_per_instance_type_and_zone_and_expand_on_click():
    checks = fleet(998) + fleet(3, {"ip-10-1-0-1": "failed", "ip-10-1-0-2": "skipped"}, itype="g5.48xlarge", net=1)
    page = grid.grid_block(checks, link, file_name)
    assert "<details class=\"gc-fold\"><summary>998 p5.48xlarge nodes in us-west-2a: all pass" in page
    assert page.count("<tr") == 1 + 2 + 1 + 998   # header, failing + incomplete g5, the passing g5 (small group), folded p5
    assert page.index("ip-10-1-0-1") < page.index("ip-10-1-0-2") < page.index("998 p5.48xlarge")
    assert len(page) < 1_000 * 400   # bytes per node stay small


def test_multi_node_checks_mark_every_node_of_the_group_and_cluster_checks_get_their_own_row():
    checks = [check("suites/test_nccl.py::test_bus_bandwidth_across_nodes_meets_floor[a+b/p5.48xlarge]", "a+b", "failed"),
              check("suites/test_taints.py::test_gpu_node_carries_gpu_taint[c/p5.48xlarge]", "c"),
              check("suites/test_karpenter.py::test_gpu_nodepool_can_launch[gpu/p5.48xlarge]", None)]
    rows, cluster, _ = grid.build_rows(checks)
    states = {r.node: r.state for r in rows}
    assert states == {"a": grid.FAIL, "b": grid.FAIL, "c": grid.PASS}
    assert cluster is not None and set(cluster.cells) == {"Karpenter"}
    page = grid.grid_block(checks, link, file_name)
    assert "(cluster-wide)" in page and "evidence/cluster.txt.gz" in page


def test_a_nodes_own_multi_node_result_decides_its_nccl_cell_not_its_failed_pair():
    """suites/test_nccl.py re-tests a failed pair's nodes with good partners: the cleared partner is green, the
    node that fails with every partner red, although both are in the failed group check."""
    group = "suites/test_nccl.py::test_bus_bandwidth_across_nodes_meets_floor[a+slow/p5.48xlarge]"
    own = "suites/test_nccl.py::test_node_passes_nccl_across_nodes"
    checks = [check(group, "a+slow", "failed"), check(f"{own}[a/p5.48xlarge]", "a"),
              check(f"{own}[slow/p5.48xlarge]", "slow", "failed")]
    rows, _, _ = grid.build_rows(checks)
    assert {r.node: r.cells["NCCL multi"].state for r in rows} == {"a": grid.PASS, "slow": grid.FAIL}


def test_a_check_not_shown_on_every_node_of_a_type_does_not_make_them_incomplete():
    checks = [check(f"suites/test_device_plugins.py::test_gpu_operator_ready_on[n{i}/p5.48xlarge]", f"n{i}", "skipped")
              for i in range(10)]
    checks += [check("suites/test_efa.py::test_fi_info_lists_every_efa_device[n3/p5.48xlarge]", "n3", "skipped"),
               *(check(f"suites/test_efa.py::test_fi_info_lists_every_efa_device[n{i}/p5.48xlarge]", f"n{i}")
                 for i in range(10) if i != 3)]
    rows, _, uniform = grid.build_rows(checks)
    assert ("p5.48xlarge", "device plugin") in uniform
    assert [r.node for r in rows if r.state == grid.NOT_SHOWN] == ["n3"]
    page = grid.grid_block(checks, link, file_name)
    assert "9 p5.48xlarge nodes in us-west-2a: all pass; not shown on every node: device plugin" in page


def test_evidence_folder_writes_one_gzip_per_node_with_every_raw_output(tmp_path: Path):
    folder = EvidenceFolder(tmp_path)
    ev = {"measurements": [{"name": "gpus", "value": 7.0, "unit": "GPUs", "threshold": 8.0, "op": "==",
                            "source": "profile", "pass": False}],
          "facts": {"gpus_seen": 7}, "attachments": [{"title": "nvidia-smi", "kind": "nvidia-smi", "text": "GPU 0\n" * 500}]}
    folder.add(["ip-1"], check_text("suites/test_gpu_visibility.py::t[ip-1/p5]", "failed", "7 of 8", "E 7 of 8", ev))
    folder.add(["ip-1", "ip-2"], check_text("suites/test_nccl.py::t[ip-1+ip-2/p5]", "passed", None, None, {}))
    written = folder.finish()
    assert sorted(p.name for p in written) == ["ip-1.txt.gz", "ip-2.txt.gz"]
    text = gzip.open(tmp_path / "evidence" / "ip-1.txt.gz", "rt").read()
    assert "gpus = 7 GPUs  criterion == 8  FAIL  (profile)" in text and text.count("GPU 0") == 500
    assert "ip-1+ip-2" in gzip.open(tmp_path / "evidence" / "ip-2.txt.gz", "rt").read()
    assert not list((tmp_path / "evidence").glob("*.txt"))


def test_summarised_output_keeps_first_and_last_lines_and_says_where_the_rest_is():
    text = "\n".join(f"line {i}" for i in range(100))
    short = summarise(text, "evidence/ip-1.txt.gz")
    assert short.startswith("line 0\n") and short.endswith("line 99")
    assert "[... 94 lines: full text in evidence/ip-1.txt.gz ...]" in short
    assert summarise("a\nb", "x") == "a\nb"


NCCL_LOG = """# nccl-tests version 2.13.9
#       size         count      type   redop    root     time   algbw   busbw #wrong     time   algbw   busbw #wrong
#        (B)    (elements)                               (us)  (GB/s)  (GB/s)            (us)  (GB/s)  (GB/s)
     1048576        262144     float     sum      -1    50.00   20.97   39.32      0    50.00   20.97   39.32      0
    67108864      16777216     float     sum      -1   400.0  167.77  314.57      0   400.0  167.77  314.57      0
  1073741824     268435456     float     sum      -1  5000.0  214.75  402.65      0  5000.0  214.75  402.65      0
# Out of bounds values : 0 OK
# Avg bus bandwidth    : 252.18
"""


CURVE = [[1048576, 39.32], [67108864, 314.57], [1073741824, 402.65]]   # NCCL_LOG's out-of-place busbw


def nccl_evidence(where: str, **channel: object) -> dict[str, object]:
    """A single-node NCCL check's evidence as pytest_gpucluster/gather/nccl_evidence.py records it: people's facts and the raw log,
    and the numbers of the headline channel."""
    return {"facts": {"where": where, "ranks": "1 node(s) x 8 GPUs", "physical_ceiling": "450.0 GB/s: NVLink per GPU"},
            "attachments": [{"title": f"all_reduce_perf log ({where})", "kind": "nccl", "text": NCCL_LOG}],
            "headline": {"nccl": {"where": where, "instance_type": "p5.48xlarge", "nodes": 1, "gpus_per_node": 8,
                                  "busbw": CURVE, "ceiling_gbs": 450.0, **channel}}}


def test_headline_plots_draw_every_run_of_a_type_with_floors_and_ceiling():
    checks = []
    for i in range(60):
        c = check(f"suites/test_nccl.py::test_bus_bandwidth_on_one_node_meets_floor[n{i}/p5.48xlarge]", f"n{i}",
                  "failed" if i == 5 else "passed")
        c.headline = headline.extract(c.nodeid, nccl_evidence(f"n{i}/p5.48xlarge"))
        checks.append(c)
    assert checks[0].headline["nccl"]["points"][-1] == (1073741824.0, 402.65)
    block = headline.headline_block(checks, {"p5.48xlarge": {"nccl_floors": {"1": {"1073741824": 380.0}}}})
    assert "NCCL all_reduce bus bandwidth, p5.48xlarge, one node: 60 run(s)" in block
    assert "59 passing runs: min-max" in block and "n5/p5.48xlarge" in block
    assert "floor (profile)" in block and "ceiling 450 GB/s" in block
    assert len(block) < 60_000


def test_headline_reads_the_structured_channel_not_facts_or_raw_logs():
    """The plot is the same whatever the facts say or the log holds: only the channel's numbers count."""
    def block(evidences: list[dict[str, object]]) -> str:
        checks = []
        for i, ev in enumerate(evidences):
            c = check(f"suites/test_nccl.py::test_bus_bandwidth_across_nodes_meets_floor[g{i}/p5.48xlarge]",
                      f"a{i}+b{i}")
            c.headline = headline.extract(c.nodeid, ev)
            checks.append(c)
        return headline.headline_block(checks, {})

    channel = {"nodes": 2, "ceiling_gbs": 95.5}
    baseline = block([nccl_evidence(f"g{i}/p5.48xlarge", **channel) for i in range(3)])
    assert "p5.48xlarge, 2 nodes: 3 run(s)" in baseline and "ceiling 95.5 GB/s" in baseline
    reworded = []
    for i in range(3):
        ev = nccl_evidence(f"g{i}/p5.48xlarge", **channel)
        ev["facts"] = {"where": "elsewhere", "ranks": "7 nodes of 3 GPUs", "physical_ceiling": "about 1 TB/s"}
        ev["attachments"] = [{"title": "all_reduce_perf log (x)", "kind": "nccl", "text": NCCL_LOG.replace("402.65", "1.00")}]
        reworded.append(ev)
    assert block(reworded) == baseline
    # facts and a log without the channel draw nothing (the report parses neither)
    bare = nccl_evidence("n0/p5.48xlarge")
    del bare["headline"]
    assert headline.extract("suites/test_nccl.py::test_x[n0/p5.48xlarge]", bare) == {}
    assert block([bare]) == ""


def test_timeline_headline_is_the_plot_of_kind_timeline_whatever_its_title():
    svg = "<svg xmlns='http://www.w3.org/2000/svg'></svg>"
    ev = {"plots": [{"title": "Karpenter provisioning timeline (p5.48xlarge)", "svg": svg, "kind": "figure"},
                    {"title": "New p5.48xlarge from NodePool gpu", "svg": svg, "kind": "timeline"}]}
    out = headline.extract("suites/test_karpenter.py::test_new_gpu_node_is_provisioned_within_budget", ev)
    assert [p["title"] for p in out["timelines"]] == ["New p5.48xlarge from NodePool gpu"]
    c = check("suites/test_karpenter.py::test_new_gpu_node_is_provisioned_within_budget")
    c.headline = out
    assert "New p5.48xlarge from NodePool gpu" in headline.headline_block([c], {})


def test_the_report_parses_no_tool_output_again():
    """The judges and gatherers read tool outputs once (parsers/); the report draws what they recorded."""
    import ast

    folder = Path(headline.__file__).parent
    for path in sorted(folder.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n.startswith("pytest_gpucluster.parsers") or n == "parsers" for n in names), path.name
    assert not any(isinstance(n, ast.Import) and any(a.name == "re" for a in n.names)
                   for n in ast.walk(ast.parse(Path(headline.__file__).read_text())))


def test_health_strip_appears_for_any_test_of_the_health_module():
    checks = [check(f"suites/test_node_health.py::test_{name}[n{i}/p5.48xlarge]", f"n{i}",
                    "failed" if (i, name) == (3, "xid") else "passed")
              for i in range(200) for name in ("dcgm_diag", "xid", "pcie")]
    block = headline.headline_block(checks, {})
    assert "Node health: 200 nodes x 3 checks, 1 node(s) failing" in block
    assert "<image" in block and len(block) < 40_000
    assert headline.headline_block(checks[:0], {}) == ""


def test_a_node_failing_alone_comes_before_a_node_failing_only_through_its_group():
    checks = [check("suites/test_nccl.py::test_bus_bandwidth_across_nodes_meets_floor[a+b/p5.48xlarge]", "a+b", "failed"),
              check("suites/test_gpu_visibility.py::test_nvidia_smi_sees_every_gpu[b/p5.48xlarge]", "b", "failed"),
              check("suites/test_gpu_visibility.py::test_nvidia_smi_sees_every_gpu[a/p5.48xlarge]", "a")]
    page = grid.grid_block(checks, link, file_name)
    assert page.index(">b</a>") < page.index(">a</a>")

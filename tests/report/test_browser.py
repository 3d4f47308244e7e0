"""The report in a real browser: headless Chromium renders the verdict first, the node-by-check grid (failing node
first, its mark leading to the nvidia-smi output that shows the missing GPU), the headline plots and the inline SVG."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from .fake_suite import FAKE_SUITE, FLEET_NCCL, FLEET_NODES, FLEET_VISIBILITY

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                  "--hide-scrollbars"]
VERDICT_RED = (0xB3, 0x26, 0x1E)   # .gc-not-accepted background in report/html.py


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("headless Chromium is not installed (Debian: apt-get install -y chromium)")


def browse(url: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}", *args, url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


@pytest.fixture
def report(run_suite) -> Path:
    run = run_suite(FAKE_SUITE)
    assert run.dir is not None
    return run.dir / "report.html"


def test_rendered_dom_has_verdict_summary_and_plot(report: Path, tmp_path: Path) -> None:
    done = browse(report.as_uri(), tmp_path, "--dump-dom", "--virtual-time-budget=5000")
    assert done.returncode == 0, done.stderr[-2000:]
    dom = done.stdout
    assert 'id="gc-verdict"' in dom and "NOT ACCEPTED" in dom
    assert "Acceptance criteria applied and measured values" in dom
    # the plot only exists after pytest-html's JavaScript built the results table from its JSON blob
    assert "<svg" in dom and "floor 300 GB/s" in dom


def test_screenshot_shows_the_verdict_banner_first(report: Path, tmp_path: Path) -> None:
    shot = tmp_path / "report.png"
    done = browse(report.as_uri(), tmp_path, f"--screenshot={shot}", "--window-size=1280,1600",
                  "--virtual-time-budget=5000")
    assert done.returncode == 0 and shot.exists(), done.stderr[-2000:]
    import matplotlib.image

    pixels = matplotlib.image.imread(str(shot))   # floats 0..1, shape (h, w, 3|4)
    assert pixels.shape[0] == 1600 and pixels.shape[1] == 1280
    red = [round(c * 255) for c in pixels[:, :, :3].reshape(-1, 3)[0]]  # sanity: the page is not red
    assert red != list(VERDICT_RED)
    top = (pixels[:300, :, :3] * 255).round()
    banner = ((abs(top[:, :, 0] - VERDICT_RED[0]) < 6) & (abs(top[:, :, 1] - VERDICT_RED[1]) < 6)
              & (abs(top[:, :, 2] - VERDICT_RED[2]) < 6))
    assert banner.sum() > 50_000, "the red NOT ACCEPTED banner is not in the top 300 px of the page"


@pytest.fixture
def fleet_report(run_suite) -> Path:
    run = run_suite({"fleet_nodes": FLEET_NODES, "test_gpu_visibility": FLEET_VISIBILITY, "test_nccl": FLEET_NCCL})
    run.result.assert_outcomes(passed=89, failed=1)
    assert run.dir is not None and (run.dir / "evidence" / "ip-10-0-0-17.txt.gz").exists()
    return run.dir / "report.html"


def test_rendered_grid_puts_the_failing_node_first_and_links_to_its_nvidia_smi(fleet_report: Path,
                                                                               tmp_path: Path) -> None:
    done = browse(fleet_report.as_uri(), tmp_path, "--dump-dom", "--virtual-time-budget=5000")
    assert done.returncode == 0, done.stderr[-2000:]
    dom = done.stdout
    grid = dom[dom.index('id="gc-grid"'):]
    first = re.search(r'<tr class="gc-([a-z-]+)"><th><a href="([^"]+)">([^<]+)</a>', grid)
    assert first is not None and first.groups() == ("fail", "evidence/ip-10-0-0-17.txt.gz", "ip-10-0-0-17")
    assert "29 p5.48xlarge nodes in us-west-2a: all pass" in grid
    row = grid[first.start():grid.index("</tr>", first.start())]
    target = re.search(r'<td class="gc-f"><a href="#(gc-ev-[0-9a-f]+)"', row)
    assert target is not None, row
    # the anchor exists only once pytest-html's JavaScript built the results table: the link lands in the rendered
    # page on the failing check's evidence, whose nvidia-smi output (open) lists 7 GPUs
    block = dom[dom.index(f'id="{target.group(1)}"'):]
    block = block[:block.index("</div>")]
    assert "<details open" in block and "nvidia-smi on ip-10-0-0-17" in block
    assert "00000000:59:00.0" in block and "00000000:5A:00.0" not in block
    # headline plot in the summary section, before the results table
    plots = dom.index('id="gc-plots"')
    assert plots < dom.index('id="results-table"')
    figure = dom[plots:dom.index("</figure>", plots)]
    assert "NCCL all_reduce bus bandwidth, p5.48xlarge, one node: 30 run(s)" in figure
    assert "<svg" in figure and "floor (profile)" not in figure and "ceiling 450 GB/s" in figure


def test_screenshot_shows_the_grid_and_the_plot_above_the_fold(fleet_report: Path, tmp_path: Path) -> None:
    shot = tmp_path / "fleet.png"
    done = browse(fleet_report.as_uri(), tmp_path, f"--screenshot={shot}", "--window-size=1280,1400",
                  "--virtual-time-budget=5000")
    assert done.returncode == 0 and shot.exists(), done.stderr[-2000:]
    import matplotlib.image

    pixels = (matplotlib.image.imread(str(shot))[:, :, :3] * 255).round()
    red = ((abs(pixels[:, :, 0] - 0xB3) < 6) & (abs(pixels[:, :, 1] - 0x26) < 6) & (abs(pixels[:, :, 2] - 0x1E) < 6))
    rows = red.sum(axis=1)
    banner = [y for y in range(len(rows)) if rows[y] > 900]       # the NOT ACCEPTED banner spans the page
    cell = [y for y in range(len(rows)) if 5 < rows[y] < 200]     # the grid's red fail cell, below the banner
    assert banner and cell and min(cell) > max(banner), "no red fail cell below the banner in the first 1400 px"
    blue = (pixels[:, :, 2] - pixels[:, :, 0]) > 60                # matplotlib's tab:blue curves (faint, overlaid)
    assert blue[max(cell):].sum() > 200, "the NCCL plot's curves are not drawn under the grid"

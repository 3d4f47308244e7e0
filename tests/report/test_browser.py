"""The report in a real browser: headless Chromium renders the verdict first and the inline SVG plot."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from .fake_suite import FAKE_SUITE

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

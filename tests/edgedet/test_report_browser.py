"""The report's HTML page opened offline in headless Chromium: the page renders and its embedded images decode."""
import re
import subprocess
from pathlib import Path

import cv2
import pytest

from edgedet.cli import main as cli_main

from .test_report import PI_RECORDS, record, write_results

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium "
                                "(apt-get install chromium; .ci/run installs it)")

# records each <img>'s decoded size once the page has loaded; --dump-dom then shows it as an attribute
PROBE = """<script>window.addEventListener('load', () => document.body.setAttribute('data-images',
  Array.from(document.images).map(i => (i.complete ? i.naturalWidth + 'x' + i.naturalHeight : 'pending')).join(',')));
</script></body>"""


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run",
             f"--user-data-dir={tmp_path / 'chromium-profile'}", "--virtual-time-budget=10000"]
    return subprocess.run([str(CHROMIUM), *flags, *args], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    pi = write_results(tmp / "pi", PI_RECORDS)
    x86 = write_results(tmp / "x86", [record("onnx", "fp32", 8.0, 0.50, host="vm")])
    assert cli_main(["report", str(pi), str(x86), "--out", str(tmp / "rep")]) == 0
    return tmp / "rep"


def test_embedded_images_decode_in_chromium(report_dir, tmp_path):
    page = (report_dir / "report.html").read_text()
    probe = tmp_path / "probe.html"  # a copy: the report itself has no script
    probe.write_text(page.replace("</body>", PROBE, 1))
    result = chromium(tmp_path, "--dump-dom", probe.as_uri())
    assert result.returncode == 0, result.stderr[-2000:]
    found = re.search(r'data-images="([^"]*)"', result.stdout)
    assert found, "the page did not finish loading: " + result.stdout[:500]
    sizes = found.group(1).split(",")
    assert len(sizes) == 2
    for size in sizes:
        width, height = (int(v) for v in size.split("x"))
        assert width > 100 and height > 100
    assert "pi5 (Cortex-A76" in result.stdout and "vm (Intel Xeon" in result.stdout


def test_screenshot_of_the_report_is_not_blank(report_dir, tmp_path):
    shot = tmp_path / "shot.png"
    result = chromium(tmp_path, f"--screenshot={shot}", "--window-size=1400,1800", (report_dir / "report.html").as_uri())
    assert result.returncode == 0, result.stderr[-2000:]
    image = cv2.imread(str(shot))
    assert image is not None and image.shape[:2] == (1800, 1400)
    # the plots are colourful; an empty page or broken images would be white and grey only
    saturation = cv2.cvtColor(image, cv2.COLOR_BGR2HSV)[..., 1]
    assert (saturation > 100).mean() > 0.01

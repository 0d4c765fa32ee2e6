"""`resdet report` in a real browser: headless Chromium (Debian's `chromium`, which `make test`
installs) renders the report of a tiny run; every image decodes and the AP table is there."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

from tools.cli import main

# written into the DOM once the page has loaded: each image's decoded width (0 = broken)
PROBE = """<script>window.addEventListener("load", () => {
  const widths = Array.from(document.images, (im) => im.complete ? im.naturalWidth : -1);
  const out = document.createElement("pre"); out.id = "probe";
  out.textContent = JSON.stringify(widths); document.body.appendChild(out);
});</script>"""
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars"]  # fmt: skip


def chromium(profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("chromium")
    assert binary, "chromium not found: `make test` installs it (apt-get install chromium)"
    command = [binary, *FLAGS, f"--user-data-dir={profile}", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)


def test_chromium_decodes_every_image_of_the_report(trained: Path, tmp_path: Path):
    page = tmp_path / "report.html"
    assert main(["report", str(trained), "--out", str(page)]) == 0
    probed = tmp_path / "probed.html"
    probed.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    dom = chromium(tmp_path / "profile", "--virtual-time-budget=10000", "--dump-dom",
                   probed.as_uri()).stdout  # fmt: skip
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom)
    assert found, "the probe did not run: the page did not load"
    widths = json.loads(found[1])
    assert len(widths) == 12 and all(w > 0 for w in widths), widths
    assert "<th>AP50 % (VOC07)</th>" in dom and "<td>circle</td>" in dom
    shot = tmp_path / "report.png"
    chromium(tmp_path / "profile", f"--screenshot={shot}", "--window-size=1200,3000",
             page.as_uri())  # fmt: skip
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert int.from_bytes(data[16:20], "big") == 1200  # the window's width

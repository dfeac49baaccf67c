"""Screenshots of the console's main pages for the README: `make screenshots`
(or `python -m tests.browser.screenshots [out_dir]`, default docs/screenshots).

Seeds a fresh demo into a temporary directory, serves it, and photographs each page at
1280x900 in Debian's Chromium: as the genebody steward (login, queue, a pending request,
grants, datasets, a dataset), as the admin (artefacts and the last one's lineage, terminations
and waivers of every dataset) and as the auditor (audit). Pages that do not answer 200 yet are skipped and named.
"""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path
from typing import Any

from tests.browser import deployment as dep

OUT = dep.ROOT / "docs" / "screenshots"


def links_below(page: Any, prefix: str) -> list[str]:
    """The links in the page's main part that go one level below `prefix`, in page order."""
    hrefs = page.locator("main a[href]").evaluate_all("els => els.map(e => e.getAttribute('href'))")
    return [str(h) for h in hrefs if re.fullmatch(re.escape(prefix) + r"/[^/?#]+", h or "")]


def shoot(page: Any, url: str, path: Path, taken: list[str], skipped: list[str]) -> bool:
    response = page.goto(url)
    status = response.status if response is not None else 0
    if status != 200:
        skipped.append(f"{url.split('/console', 1)[-1] or '/'} ({status})")
        return False
    page.wait_for_load_state("networkidle")
    page.screenshot(path=str(path))
    taken.append(path.name)
    return True


def main(out: Path = OUT) -> int:
    why = dep.chromium_missing()
    if why:
        print(f"screenshots: {why}", file=sys.stderr)
        return 1
    out.mkdir(parents=True, exist_ok=True)
    taken: list[str] = []
    skipped: list[str] = []
    with tempfile.TemporaryDirectory(prefix="console-shots-") as tmp, dep.deployment(Path(tmp)) as demo, \
            dep.chromium() as browser:
        base = f"{demo.url}/console"
        ctx = browser.new_context(viewport=dep.VIEWPORT, color_scheme="light")
        page = ctx.new_page()
        page.goto(f"{base}/login")
        page.get_by_label("E-mail address").fill(dep.STEWARD)
        page.screenshot(path=str(out / "login.png"))
        taken.append("login.png")
        dep.login(page, demo.url, dep.STEWARD, demo.password)
        shoot(page, f"{base}/requests", out / "queue.png", taken, skipped)
        chen = demo.request_id("chen@tsinghua.edu.cn", "genebody", "train40")
        shoot(page, f"{base}/requests/{chen}", out / "request.png", taken, skipped)
        shoot(page, f"{base}/grants?dataset=genebody", out / "grants.png", taken, skipped)
        if shoot(page, f"{base}/datasets", out / "datasets.png", taken, skipped):
            links = links_below(page, "/console/datasets")
            one = "/console/datasets/genebody" if "/console/datasets/genebody" in links or not links else links[0]
            shoot(page, demo.url + one, out / "dataset.png", taken, skipped)
        else:
            shoot(page, f"{base}/datasets/genebody", out / "dataset.png", taken, skipped)
        # Terminations and waivers across every dataset (the admin's view: the genebody steward's
        # lists are empty in the demo), falling back to the steward's where the admin is refused.
        admin = browser.new_context(viewport=dep.VIEWPORT, color_scheme="light").new_page()
        dep.login(admin, demo.url, dep.ADMIN, demo.password)
        # Artefacts as the admin too: the demo's two-hop SHHQ artefact is not the genebody steward's.
        if shoot(admin, f"{base}/artefacts", out / "artefacts.png", taken, skipped):
            links = links_below(admin, "/console/artefacts")
            deepest = links[-1] if links else "/console/artefacts/alice-nerf-v1"
            shoot(admin, demo.url + deepest, out / "artefact.png", taken, skipped)
        for name in ("terminations", "waivers"):
            if not shoot(admin, f"{base}/{name}", out / f"{name}.png", [], []):
                shoot(page, f"{base}/{name}", out / f"{name}.png", taken, skipped)
            else:
                taken.append(f"{name}.png (admin)")
        auditor = browser.new_context(viewport=dep.VIEWPORT, color_scheme="light").new_page()
        dep.login(auditor, demo.url, dep.AUDITOR, demo.password)
        shoot(auditor, f"{base}/audit", out / "audit.png", taken, skipped)
    print(f"screenshots in {out}: {', '.join(taken)}")
    if skipped:
        print(f"skipped (not answering 200 yet): {', '.join(skipped)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT))

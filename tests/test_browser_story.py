"""The debugging story in a real browser (headless Chromium, JupyterLab): MiniLM quantized naively (every op,
placement 'all') collapses; build → compare → diagnose → Apply → the graph view recolours → the latency tab's
accuracy-vs-latency trade-off; then every tab's plots are drawn, all beside a CPU-burning process. Screenshots of
the app and of the graph view go to docs/ under `make docs` (WORKBENCH_DOCS=1), to the test's folder otherwise."""
from __future__ import annotations

import os
import re

import pytest
from test_browser import ROOT, code_tab, cpu_burner, drawn_plots, notebook_page, write_notebook

pytestmark = pytest.mark.slow

CELLS = [
    "import workbench as wb\n",
    "app = wb.Workbench('minilm', eval_limit=16, auto_run=False)\n"
    "app.placement.value = 'all'\napp.batches.value = '1'\napp.iterations.value = 10\napp\n",
]


def _fills(page) -> list[str]:
    return page.eval_on_selector_all("g.wb-node rect", "rects => rects.map(r => r.getAttribute('fill'))")


def test_minilm_debugging_story_in_a_real_browser(tmp_path):
    from playwright.sync_api import expect

    write_notebook(tmp_path / "story.ipynb", CELLS)
    docs = ROOT / "docs" if os.environ.get("WORKBENCH_DOCS") else tmp_path
    with cpu_burner(), notebook_page(tmp_path, "story.ipynb", 2200) as page:
        app = page.locator(".jp-OutputArea-output:has(.widget-toggle-buttons)")
        app.wait_for(timeout=300_000)
        page.get_by_role("button", name="Build & compare").click()
        page.get_by_text("int8 minmax [all]: per-sample cosine mean").wait_for(timeout=300_000)
        page.get_by_role("tab", name="Graph").click()
        page.wait_for_function("document.querySelectorAll('g.wb-node').length > 100", timeout=60_000)
        naive = _fills(page)
        page.get_by_role("tab", name="Diagnose").click()
        page.get_by_role("button", name="Diagnose INT8").click()
        page.get_by_text("diagnosis done in").wait_for(timeout=540_000)
        page.get_by_role("button", name="Apply suggested recipe", exact=False).click()
        page.get_by_text(re.compile(r"^int8 (?!.*\[all\]).*: per-sample cosine mean")).wait_for(timeout=300_000)
        page.get_by_role("tab", name="Graph").click()
        page.wait_for_function("naive => Array.from(document.querySelectorAll('g.wb-node rect'))"
                               ".map(r => r.getAttribute('fill')).join() !== naive", arg=",".join(naive),
                               timeout=120_000)
        assert _fills(page) != naive, "the graph view recoloured after Apply"
        page.locator(".wb-graph").screenshot(path=str(docs / "graph-view.png"))
        no_news = page.get_by_role("button", name="No", exact=True)  # JupyterLab's news prompt
        if no_news.count():
            no_news.first.click()
        page.get_by_role("tab", name="Latency").click()
        page.get_by_role("button", name="Measure latency").click()
        page.get_by_text("latency measured on").wait_for(timeout=300_000)
        page.get_by_text("Pareto front").first.wait_for(timeout=60_000)
        expect(page.get_by_role("button", name="Stop")).to_be_disabled(timeout=60_000)  # idle again
        app.screenshot(path=str(docs / "app.png"))
        latency = [plot for plot in drawn_plots(app, "Latency") if plot["marks"] >= 1]
        assert len(latency) >= 3, ("batch, trade-off and distribution plots drawn", latency)
        assert any(plot["marks"] >= 1 for plot in drawn_plots(app, "Diagnose")), "the ranking is drawn"
        compare = drawn_plots(app, "Compare")
        assert compare and compare[0]["marks"] >= 1, ("the per-layer plot is drawn", compare)
        drawn_plots(app, "Graph")
        assert app.locator("g.wb-node").count() > 100, "the graph view draws MiniLM's nodes"
        code = code_tab(app)
        assert any(c.startswith("workbench compare minilm") for c in code), code
    assert (docs / "graph-view.png").stat().st_size > 10_000 and (docs / "app.png").stat().st_size > 10_000

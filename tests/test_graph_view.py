"""The graph view draws every model of the corpus in a real browser (headless Chromium), as a person sees it: one
box per node of the payload, no error, and its navigation works (search, collapsed scopes, badges redrawn after a
toggle). The page is the widget's own ES module outside JupyterLab (graphview.standalone_html)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import workbench as wb
from workbench.analysis.compare import compare
from workbench.app.graphview import graph_payload, standalone_html
from workbench.precision.transform import apply
from workbench.zoo import corpus

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.slow


def _payload(name: str, recipe: wb.Recipe | None = None):
    entry = corpus.get(name)
    model = wb.load_model(str(entry.path()))
    recipe = recipe or wb.Recipe("int8")
    transformed = apply(model, recipe, entry.dataset("calib").take(8), progress=False)
    report = compare(transformed, entry.dataset("eval").take(2), framework=False, progress=False,
                     local_sensitivity=False)
    higher = {n: recipe.fallback_precision for n in transformed.excluded_nodes}
    return graph_payload(report, transformed.fp32.proto.graph, transformed.quantized_nodes, higher)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is not installed: run `make test` (it installs it)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


def _open(browser, payload):
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.set_content(standalone_html(payload))
    page.wait_for_function("window.rendered !== undefined", timeout=120_000)
    return page, errors


@pytest.mark.parametrize("name", [n for n in corpus.names() if n != "silero-vad"])
def test_every_corpus_graph_is_drawn(browser, name):
    payload = _payload(name)
    page, errors = _open(browser, payload)
    try:
        drawn = page.evaluate("document.querySelectorAll('g.wb-node').length")
        ids = page.evaluate("Array.from(document.querySelectorAll('g.wb-node')).map(g => g.dataset.id)")
        assert not errors and page.evaluate("model.get('render_error')") == "", errors
        assert drawn == len(payload["nodes"]) == len(set(ids)) > 5, "one box per node, no two with one name"
        assert page.locator(".wb-legend").inner_text().count("dB") >= 3, "the colour scale is explained"
    finally:
        page.close()


def test_search_collapse_selection_and_badges_after_a_toggle(browser):
    payload = _payload("yolov8n-nudenet")
    page, errors = _open(browser, payload)
    try:
        before = page.evaluate("document.querySelectorAll('g.wb-node').length")
        page.select_option(".wb-depth", "1")
        scopes = page.evaluate("document.querySelectorAll('g.wb-scope').length")
        after = page.evaluate("document.querySelectorAll('g.wb-node').length")
        assert 5 <= scopes < 40 and after < before / 4, (scopes, after, before)
        target = "/model.22/cv3.2/cv3.2.2/Conv"
        page.fill(".wb-search", "cv3.2.2/Conv")
        page.press(".wb-search", "Enter")
        assert page.evaluate("model.get('selected')") == target, "search selects the node"
        box = page.locator(f"g.wb-node[data-id='{target}'] rect")
        assert box.get_attribute("stroke") == "#ff7f0e", "the search expanded its scope and highlights the node"
        page.select_option(".wb-depth", "0")
        page.locator("g.wb-node[data-id='/model.22/Sigmoid']").dispatch_event("click")
        assert page.evaluate("model.get('selected')") == "/model.22/Sigmoid"
        assert page.locator("g.wb-node[data-id='/model.22/Sigmoid'] rect").get_attribute("stroke") == "#ff7f0e"
        assert box.get_attribute("stroke") != "#ff7f0e", "one node highlighted at a time"
        badges = page.evaluate("document.querySelectorAll('g.wb-qdq:not([style*=none])').length")
        toggled = _payload("yolov8n-nudenet", wb.Recipe("int8", exclude=(target,)))
        assert toggled["structure"] == payload["structure"]
        page.evaluate("(g) => { model.values.graph = g; model.fire('change:graph'); }", toggled)
        rect = page.locator(f"g.wb-node[data-id='{target}'] text").first
        assert "FP32" in rect.text_content(), "the kept node says so"
        assert page.evaluate("document.querySelectorAll('g.wb-qdq:not([style*=none])').length") < badges, \
            "the Q/DQ badge of the excluded Conv's input is gone"
        assert not errors, errors
    finally:
        page.close()

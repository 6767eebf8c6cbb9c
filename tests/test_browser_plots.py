"""Plots that a person sees drawn, in a real browser (headless Chromium, JupyterLab), in the conditions issue 25
found them blank: figures updated while their tab is hidden, then shown; the app displayed a second time; a
CPU-burning process beside the browser. A plot counts as drawn when its SVG holds trace paths with data."""
from __future__ import annotations

import multiprocessing

import pytest
from test_browser import notebook_page, write_notebook

pytestmark = pytest.mark.slow

CELLS = [
    "import workbench as wb\n"
    "app = wb.Workbench('mnist-cnn', eval_limit=64)\n"
    "app.batches.value = '1,2'\napp.iterations.value = 10\napp\n",
    # updated while the Latency and Diagnose tabs are hidden (the Compare tab is shown)
    "app.wait()\napp.run_latency()\napp.run_diagnosis()\napp.selected_node = 'node_conv2d_1'\napp.show_histogram()\n"
    "app.precision.value = 'fp16'\napp.wait(300)\n"
    "print('updated:', len(app.layer_figure.data), len(app.histogram_figure.data))\n",
    "app\n",  # the same live app, displayed again
]

# per plot shown (in the selected tab): how many traces have drawn marks (a path with coordinates, or bars / points)
DRAWN = """(root) => Array.from(root.querySelectorAll('.js-plotly-plot')).filter(plot => plot.offsetParent !== null)
.map(plot => {
  const paths = Array.from(plot.querySelectorAll('g.trace path')).filter(p => (p.getAttribute('d') || '').length > 8);
  return {traces: plot.querySelectorAll('g.trace').length, marks: paths.length,
          title: (plot.querySelector('.gtitle') || {}).textContent || ''};
})"""


def _burn(stop) -> None:
    while not stop.is_set():
        sum(i * i for i in range(10_000))


def _plots(view, tab: str) -> list[dict]:
    view.get_by_role("tab", name=tab).click()
    view.page.wait_for_timeout(500)
    return view.evaluate(DRAWN)


def test_every_plot_is_drawn_after_hidden_updates_and_a_second_display(tmp_path):
    write_notebook(tmp_path / "plots.ipynb", CELLS)
    stop = multiprocessing.Event()
    burner = multiprocessing.Process(target=_burn, args=(stop,), daemon=True)
    burner.start()
    try:
        with notebook_page(tmp_path, "plots.ipynb", 2400) as page:
            printed = page.locator("pre", has_text="updated:")
            printed.wait_for(timeout=600_000)
            layer_traces, histogram_traces = map(int, printed.inner_text().split()[1:3])
            assert layer_traces >= 1 and histogram_traces >= 1
            views = page.locator(".jp-OutputArea-output:has(.widget-toggle-buttons)")
            views.nth(1).wait_for(timeout=120_000)
            page.wait_for_function("document.querySelectorAll('.jp-OutputArea-output .widget-tab').length >= 2",
                                   timeout=120_000)
            for index in (0, 1):
                view = views.nth(index)
                view.scroll_into_view_if_needed()
                page.wait_for_function(
                    "(i) => { const v = document.querySelectorAll('.jp-OutputArea-output .widget-tab')[i];"
                    " return v && v.querySelector('.js-plotly-plot g.trace path'); }", arg=index, timeout=120_000)
                compare = _plots(view, "Compare")
                assert compare and compare[0]["traces"] == layer_traces and compare[0]["marks"] >= 1, \
                    (index, "every trace the kernel holds is drawn", compare)
                graph = _plots(view, "Graph")
                assert graph and graph[0]["traces"] == histogram_traces and graph[0]["marks"] >= 1, (index, graph)
                latency = _plots(view, "Latency")
                drawn = [plot for plot in latency if plot["marks"] >= 1]
                assert len(drawn) >= 3, (index, "batch, trade-off and distribution plots drawn", latency)
                diagnose = _plots(view, "Diagnose")
                assert any(plot["marks"] >= 1 for plot in diagnose), (index, diagnose)
    finally:
        stop.set()
        burner.join(5)

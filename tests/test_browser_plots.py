"""Plots that a person sees drawn, in a real browser (headless Chromium, JupyterLab), in the conditions issue 25
found them blank: figures updated while their tab is hidden, then shown; the app displayed a second time; a
CPU-burning process beside the browser. A plot counts as drawn when its SVG holds trace paths with data. Every tab
is driven on a zoo CNN and on two corpus models loaded from their files with the user's own .npz data (MiniLM's
tabs are driven by tests/test_browser_story.py)."""
from __future__ import annotations

import pytest
from test_browser import code_tab, cpu_burner, drawn_plots, notebook_page, write_notebook

pytestmark = pytest.mark.slow

# how each model is opened, as a user would: a zoo name, or a corpus file with its calibration/evaluation .npz
OPEN = {
    "mnist-cnn": "app = wb.Workbench('mnist-cnn', eval_limit=64)\napp.batches.value = '1,2'\n",
    "ppocr-cls": "from workbench.zoo import corpus\nentry = corpus.get('ppocr-cls')\n"
                 "app = wb.Workbench(str(entry.path()), calib_data=str(entry.npz('calib')),"
                 " eval_data=str(entry.npz('eval')), eval_limit=32)\n",
    "oww-hey-jarvis": "from workbench.zoo import corpus\nentry = corpus.get('oww-hey-jarvis')\n"
                      "app = wb.Workbench(str(entry.path()), calib_data=str(entry.npz('calib')),"
                      " eval_data=str(entry.npz('eval')), eval_limit=32)\n",
}


CORPUS = ("ppocr-cls", "oww-hey-jarvis")


def cells(model: str) -> list[str]:
    return [
        "import workbench as wb\n" + OPEN[model] + "app.iterations.value = 10\napp\n",  # corpus: their fixed batch
        # updated while the Latency and Diagnose tabs are hidden (the Compare tab is shown)
        "app.wait()\napp.run_latency()\napp.run_diagnosis()\n"
        "app.selected_node = next(n for n in app.report.layers['node'] if app._input_tensor(n))\napp.show_histogram()\n"
        "app.precision.value = 'fp16'\napp.wait(600)\n"
        "print('updated:', len(app.layer_figure.data), len(app.histogram_figure.data))\n",
        "app\n",  # the same live app, displayed again
    ]


@pytest.mark.parametrize("model", list(OPEN))
def test_every_plot_is_drawn_after_hidden_updates_and_a_second_display(tmp_path, model):
    write_notebook(tmp_path / "plots.ipynb", cells(model))
    with cpu_burner(), notebook_page(tmp_path, "plots.ipynb", 2400) as page:
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
            compare = drawn_plots(view, "Compare")
            assert compare and compare[0]["traces"] == layer_traces and compare[0]["marks"] >= 1, \
                (index, "every trace the kernel holds is drawn", compare)
            graph = drawn_plots(view, "Graph")
            assert graph and graph[0]["traces"] == histogram_traces and graph[0]["marks"] >= 1, (index, graph)
            assert view.locator("g.wb-node").count() > 0, (index, "the graph view draws the model's nodes")
            latency = drawn_plots(view, "Latency")
            drawn = [plot for plot in latency if plot["marks"] >= 1]
            assert len(drawn) >= 3, (index, "batch, trade-off and distribution plots drawn", latency)
            diagnose = drawn_plots(view, "Diagnose")
            assert any(plot["marks"] >= 1 for plot in diagnose), (index, diagnose)
            code = code_tab(view)
            assert any(c.startswith("workbench compare") for c in code) and any("print(" in c for c in code), code
            if model in CORPUS:  # the user's own files are named, not random data
                assert any("--eval-data" in c for c in code), code

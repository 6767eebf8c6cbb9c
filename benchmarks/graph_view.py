"""Graph view timing: how long the browser takes to lay out and draw each model's graph (dagre + SVG, headless
Chromium), to recolour it after a precision toggle, and how long the toggle's Python side takes (re-quantize from
cached ranges, compare on the app's evaluation samples, rebuild the payload).

    python benchmarks/graph_view.py [--models minilm,ppocr-det] [--samples 16]
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("WORKBENCH_CACHE_DIR", tempfile.mkdtemp(prefix="workbench-bench-"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _table import markdown_table  # noqa: E402

def data_for(name: str):
    import workbench as wb
    from workbench.zoo import corpus

    if name in ("minilm", "mobilenet-v2"):
        model = wb.load_model(name)
        return model, model.zoo.calibration_data(), model.zoo.evaluation_data()
    m = corpus.get(name)
    return wb.load_model(str(m.path())), m.dataset("calib"), m.dataset("eval")


def main() -> None:
    import workbench as wb
    from workbench.analysis.compare import compare
    from workbench.app.graphview import graph_payload, standalone_html
    from workbench.precision.transform import apply

    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="minilm,ppocr-det")
    parser.add_argument("--samples", type=int, default=16,
                        help="the app's evaluation samples (eval_limit; 16 in the browser story)")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    rows = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox", "--disable-gpu"])
        for name in args.models.split(","):
            model, calib, data = data_for(name)
            data = data.take(args.samples)

            def cycle(recipe, local: dict | None = None):
                """The app's run: a toggle keeps the local SQNRs of the last comparison (reuse_local)."""
                start = time.perf_counter()
                transformed = apply(model, recipe, calib, progress=False)
                report = compare(transformed, data, framework=False, progress=False,
                                 local_sensitivity=local is None, reuse_reference=local is not None)
                if local is not None:
                    report.local_sqnr = dict(local)
                higher = {n: recipe.fallback_precision for n in transformed.excluded_nodes}
                payload = graph_payload(report, transformed.fp32.proto.graph, transformed.quantized_nodes, higher)
                return payload, time.perf_counter() - start, report

            cycle(wb.Recipe("int8"))  # calibration and the FP32 reference: cached from here on, as in the app
            payload, first, report = cycle(wb.Recipe("int8"))
            worst = min((n for n in payload["nodes"] if n["local_sqnr_db"] is not None),
                        key=lambda n: n["local_sqnr_db"])
            # a toggle compares against the FP32 side's marked engine: built in the toggle when missing (first
            # column); the app builds it in the background after Build & compare, so toggles find it ready (second)
            toggled, first_toggle_s, _ = cycle(wb.Recipe("int8", exclude=(worst["id"],)), report.local_sqnr)
            toggle_s = cycle(wb.Recipe("int8"), report.local_sqnr)[1]
            page = browser.new_page(viewport={"width": 1300, "height": 900})
            page.set_content(standalone_html(payload))
            page.wait_for_function("window.rendered !== undefined", timeout=120_000)
            render_ms = page.evaluate("window.rendered")
            recolour_ms = page.evaluate("""(graph) => { model.values.graph = graph;
                model.fire('change:graph'); return model.get('render_ms'); }""", toggled)
            drawn = page.evaluate("document.querySelectorAll('g.wb-node').length")
            page.close()
            rows.append({"model": name, "nodes drawn": drawn, "hidden (shape logic)": payload["hidden_nodes"],
                         "edges": len(payload["edges"]), "render ms (layout + SVG)": round(render_ms),
                         "recolour ms": round(recolour_ms, 1),
                         "toggle s, reference built in it": round(first_toggle_s, 2),
                         "toggle s, reference ready (as in the app)": round(toggle_s, 2),
                         "full compare s": round(first, 2), "samples": len(data),
                         "toggled node": worst["id"]})
            print(rows[-1], file=sys.stderr, flush=True)
        browser.close()
    print(markdown_table(rows))


if __name__ == "__main__":
    main()

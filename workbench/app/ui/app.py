"""The workbench app: model, precision, calibration, exclusions, profile, backend; Compare, Diagnose, Latency
and Code tabs. Every number comes from a library call; errors land in the status line, the kernel keeps going."""
from __future__ import annotations

import functools
import html
import os
import threading
import time
from dataclasses import replace
from typing import Any, Callable

import ipywidgets as w
import plotly.graph_objects as go

from workbench import zoo
from workbench.analysis.tasks import TASKS
from workbench.app import plots
from workbench.app.graphview import GraphView, engine_payload, graph_payload
from workbench.app.ui.code import CodeSetup, cli_command, python_snippet
from workbench.app.ui.form import RecipeForm
from workbench.app.worst import worst_inputs_html
from workbench.core.errors import WorkbenchError, one_line
from workbench.core.log import LOGGER
from workbench.core.progress import Stopped, Watch, watching
from workbench.precision.recipe import FIELDS, Recipe
from workbench.runtime import availability, get_backend


def _guard(method: Callable) -> Callable:
    """Run a UI action; a bad input becomes one line in the status area, never a dead kernel."""
    @functools.wraps(method)
    def wrapper(self: "Workbench", *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except WorkbenchError as exc:
            self._status(f"⚠ {exc}", error=True)
        except Exception as exc:  # keep the kernel alive, say what broke
            self._status(f"⚠ internal error: {type(exc).__name__}: {one_line(exc)}",
                         error=True)
        self.progress.bar_style = "danger"
        return None
    return wrapper


def _show(figure_widget: go.FigureWidget, figure: go.Figure) -> None:
    with figure_widget.batch_update():
        figure_widget.data = []
        figure_widget.add_traces(list(figure.data))
        figure_widget.layout = figure.layout


# A copy button for the Code tab's text areas: the browser's clipboard (the kernel cannot reach it), with the
# selection-and-copy fallback for pages without the asynchronous clipboard API.
_COPY = ("<button class='workbench-copy' title='copy to the clipboard' onclick=\"const t = this.closest("
         "'.widget-vbox').querySelector('textarea'); if (navigator.clipboard) {navigator.clipboard.writeText(t.value)}"
         " else {t.select(); document.execCommand('copy')} this.textContent = 'copied';\">copy</button>")


# Nodes that compute nothing a precision could change: not offered in the keep-FP32 list (Paddle models have
# hundreds of Constant nodes)
DEFAULT_BATCHES = "1,8"  # the latency sweep's batches for a model with a dynamic batch
PREVIEW_SAMPLES = 8  # a graph toggle first recolours the graph from this many samples, then from all
NOT_EXCLUDABLE = frozenset({"Constant", "Identity", "Shape", "Size", "ConstantOfShape"})


class Workbench:
    """`Workbench("mnist-cnn")`, `Workbench("model.onnx")` or `Workbench(module, example_inputs)`.

    With `auto_run`, the first build and comparison start in the background: the app is shown at once and reports
    its progress; `wait()` blocks until a running action ends."""

    def __init__(self, model: Any = None, example_inputs: Any = None, eval_limit: int = 512,
                 auto_run: bool = True, calib_data: Any = None, eval_data: Any = None, **torch_options: Any) -> None:
        self.model = None
        self.data_sources: dict[str, Any] = {"calib": None, "eval": None}  # as given: .npz path, dict, Dataset …
        self.datasets: dict[str, Any] = {"calib": None, "eval": None}  # read and checked against the model
        self.source = ""
        self.report = None
        self.transformed = None  # the last built model (precision.transform.TransformedModel)
        self.diagnosis = None
        self.selected_node: str | None = None
        self.eval_limit = eval_limit
        self._build_widgets()
        if model is not None:
            self.load(model, example_inputs, **torch_options)
            if self.model is not None and (calib_data is not None or eval_data is not None):
                self.set_data(calib_data, eval_data)
            if auto_run and self.model is not None:  # in the background: the app shows at once, with progress
                self._background(self.run)

    # ---- layout -------------------------------------------------------------------------------------------
    def _build_widgets(self) -> None:
        self._input_widgets()
        self._run_widgets()
        self._result_widgets()
        self.tabs = self._tabs()
        controls = w.VBox([
            w.HBox([self.zoo_picker, self.path, self.load_button]), self.model_info,
            w.HBox([self.calib_file, self.eval_file]), self.data_note, self.precision,
            w.HBox(self._fields("dropdown", "float"), layout=w.Layout(flex_flow="row wrap")),
            w.HBox(self._fields("checkbox"), layout=w.Layout(flex_flow="row wrap")),
            *self._fields("text"),
            w.HBox([*self._fields("nodes"), w.VBox([w.HTML("<b>optimization profile</b> (min,opt,max)"),
                                                     self.profile_box, self.profile_message])]),
            w.HBox([self.backend, self.task, self.backend_note]),
            w.HBox([self.build_button, self.stop_button, self.progress, self.step]), self.status,
        ])
        self.widget = w.VBox([w.HTML("<h3>workbench</h3>"), controls, self.tabs])

    def _input_widgets(self) -> None:
        """The model, its data, the recipe (one widget per field), the profile, the task and the backend."""
        self.zoo_picker = w.Dropdown(options=zoo.names(), description="zoo model")
        self.path = w.Text(placeholder="or a path to model.onnx", layout=w.Layout(width="280px"))
        self.load_button = w.Button(description="Load", icon="folder-open")
        self.load_button.on_click(lambda _: self._background(self._load_from_picker))
        self.model_info = w.HTML()
        self.calib_file = w.Text(placeholder="calibration .npz (keys = input names)", description="calibration",
                                 continuous_update=False, layout=w.Layout(width="360px"))
        self.eval_file = w.Text(placeholder="evaluation .npz", description="evaluation", continuous_update=False,
                                layout=w.Layout(width="360px"))
        for role, box in (("calib", self.calib_file), ("eval", self.eval_file)):
            box.observe(functools.partial(self._on_data_file, role), names="value")
        self.data_note = w.HTML()
        self.form = RecipeForm(precision="int8")  # one widget per Recipe field, from its spec
        self.precision, self.placement = self.form.widgets["precision"], self.form.widgets["placement"]
        self.fallback_precision, self.exclude = self.form.widgets["fallback_precision"], self.form.widgets["exclude"]
        self.precision.observe(functools.partial(
            self._toggled, self.precision, "the precision stays {old}",
            lambda change: self._background(self._on_precision)), names="value")
        self.profile_box = w.VBox()
        self.profile_message = w.HTML()
        self.task = w.Combobox(options=[t for t in TASKS if t != "none"] + ["none"], value="auto", description="task",
                               ensure_option=False, placeholder="auto, a task, or my_metrics.py:score",
                               tooltip="what the verdict scores besides per-sample cosines: auto chooses from the "
                                       "output layout; a plug-in is fn(outputs, reference, data) -> float or dict")
        ok = {name: reason for name, (usable, reason) in availability().items()}
        usable = [name for name, reason in ok.items() if not reason]
        self.backend = w.Dropdown(options=usable, value="onnxruntime-cpu", description="backend")
        missing = {n: r for n, r in ok.items() if r}
        self.backend_note = w.HTML(
            f"<details style='color:gray'><summary>{len(missing)} backend(s) unavailable here</summary>"
            + "<br>".join(f"{html.escape(n)}: {html.escape(r)}" for n, r in missing.items()) + "</details>"
            if missing else "")

    def _run_widgets(self) -> None:
        """Build & compare, Stop, and the running step's progress."""
        self.build_button = w.Button(description="Build & compare", button_style="primary", icon="play",
                                     layout=w.Layout(min_width="165px"))
        self.build_button.on_click(lambda _: self._background(self.run))
        self.stop_button = w.Button(description="Stop", icon="stop", disabled=True, button_style="warning",
                                    tooltip="end the running calibration, comparison, diagnosis or latency sweep")
        self.stop_button.on_click(lambda _: self.stop())
        self.progress = w.IntProgress(value=0, min=0, max=3, description="", layout=w.Layout(width="200px"))
        self.step = w.HTML(layout=w.Layout(flex="1 1 auto"))  # the running step, its count and time left
        self._worker: threading.Thread | None = None
        self._watch: Watch | None = None
        self._refining = threading.Event()  # a toggle's preview is shown; the full comparison runs
        self.timings: dict[str, float] = {}  # the last run: seconds to build, to show the preview, to show all
        self.status = w.HTML()

    def _result_widgets(self) -> None:
        """What the tabs show: figures, the graph view and its node panel, the diagnosis, latency, code."""
        self.layer_figure = go.FigureWidget()
        self.graph_view = GraphView(height=620)
        self.graph_view.observe(lambda change: self.select_graph_node(change["new"]), names="selected")
        self.graph_node = w.HTML("<i>click a node</i>", layout=w.Layout(width="330px"))
        self.node_precision = w.ToggleButtons(options=["INT8", "FP16", "FP32"], value=None, disabled=True,
                                              description="run in", style={"button_width": "60px"})
        self.node_precision.observe(functools.partial(
            self._toggled, self.node_precision, "the node keeps its precision",
            lambda change: self._background(self.set_node_precision, change["new"])), names="value")
        self.histogram_button = w.Button(description="Activation histogram", disabled=True, icon="bar-chart")
        self.histogram_button.on_click(lambda _: self._background(self.show_histogram))
        self.histogram_figure = go.FigureWidget(layout={"height": 300, "width": 420})
        self.layer_detail = w.HTML()
        self.toggle_button = w.Button(description="Keep this node in FP32", disabled=True)
        self.toggle_button.on_click(lambda _: self._background(self.toggle_selected))
        self.diagnose_button = w.Button(description="Diagnose INT8", icon="stethoscope")
        self.diagnose_button.on_click(lambda _: self._background(self.run_diagnosis))
        self.diagnosis_text = w.HTML()
        self.worst_inputs = w.HTML()  # the comparison's worst samples, drawn (workbench.app.worst)
        self.diagnosis_worst = w.HTML()
        self.ranking_figure = go.FigureWidget()
        self.apply_button = w.Button(description="Apply suggested recipe", disabled=True, button_style="success",
                                     layout=w.Layout(width="auto"))
        self.apply_button.on_click(lambda _: self._background(self.apply_fallback))
        self.report_button = w.Button(description="Save HTML report", icon="download", disabled=True,
                                      tooltip="the diagnosis (and the last latency run) as one shareable file")
        self.report_button.on_click(lambda _: self.save_report())
        self.latency_report = None  # the last latency sweep, for the report
        self.batches = w.Text(value=DEFAULT_BATCHES, description="batches")
        self.iterations = w.BoundedIntText(value=50, min=5, max=10000, description="iterations")
        self.latency_button = w.Button(description="Measure latency", icon="clock-o")
        self.latency_button.on_click(lambda _: self._background(self.run_latency))
        self.batch_figure = go.FigureWidget()
        self.distribution_figure = go.FigureWidget()
        self.tradeoff_figure = go.FigureWidget()
        self.tradeoff = None  # the last accuracy-vs-latency table (workbench.analysis.bench.tradeoff)
        self.engine_button = w.Button(description="Build engine", icon="cogs",
                                      tooltip="build the current recipe with the installed TensorRT and map every "
                                              "engine layer to the graph's nodes")
        self.engine_button.on_click(lambda _: self._background(self.run_engine))
        self.layer_info = w.Text(description="or layer info", placeholder="layers.json from trtexec "
                                 "--profilingVerbosity=detailed --exportLayerInfo", layout=w.Layout(width="520px"))
        self.engine_text = w.HTML()
        self.engine_graph = GraphView(height=560)
        self.engine = None  # the last analysis.engine.EngineView
        self.python_code = w.Textarea(layout=w.Layout(width="100%", height="260px"))
        self.cli_code = w.Textarea(layout=w.Layout(width="100%", height="60px"))

    def _tabs(self) -> w.Tab:
        tabs = w.Tab(children=[
            w.VBox([self.layer_figure, w.HBox([self.layer_detail, self.toggle_button]), self.worst_inputs]),
            w.HBox([w.Box([self.graph_view], layout=w.Layout(width="820px", border="1px solid #ddd")),
                    w.VBox([self.graph_node, self.node_precision, self.histogram_button, self.histogram_figure])]),
            w.VBox([self.diagnose_button, self.diagnosis_text, self.diagnosis_worst, self.ranking_figure,
                    w.HBox([self.apply_button, self.report_button])]),
            w.VBox([w.HBox([self.batches, self.iterations, self.latency_button]), self.batch_figure,
                    self.tradeoff_figure, self.distribution_figure]),
            w.VBox([w.HBox([self.engine_button, self.layer_info]), self.engine_text,
                    w.Box([self.engine_graph], layout=w.Layout(width="980px", border="1px solid #ddd"))]),
            w.VBox([w.VBox([w.HTML("<b>Python</b> " + _COPY), self.python_code]),
                    w.VBox([w.HTML("<b>CLI</b> " + _COPY), self.cli_code])]),
        ])
        for i, title in enumerate(["Compare", "Graph", "Diagnose", "Latency", "Engine", "Code"]):
            tabs.set_title(i, title)
        return tabs

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    def _status(self, text: str, error: bool = False) -> None:
        color = "crimson" if error else "#333"
        self.status.value = f"<span style='color:{color}'>{html.escape(text)}</span>"

    # ---- background work -----------------------------------------------------------------------------------
    def _background(self, action: Callable, *args: Any) -> None:
        """A button's work runs in a thread, so the kernel still hears the Stop button; one action at a time (an
        action started from inside the running one, e.g. Apply changing the precision, runs inline)."""
        if self._worker is not None and self._worker.is_alive():
            if threading.current_thread() is self._worker:
                action(*args)
            else:
                self._status("busy: wait for the running step or press Stop")
            return
        self._watch = Watch(report=self._show_step)
        self.stop_button.disabled = False
        self._worker = threading.Thread(target=self._watched, args=(action, self._watch, *args), daemon=True,
                                        name="workbench-app")
        self._worker.start()

    def _watched(self, action: Callable, watch: Watch, *args: Any) -> None:
        try:
            with watching(watch):
                action(*args)
        except Stopped:
            self.progress.bar_style = "warning"
            refining = self._refining.is_set()
            self._status(f"stopped: the views show the preview on {self.report.samples} samples" if refining
                         else "stopped; the cache keeps only finished results (the next run picks them up)")
        finally:
            self._refining.clear()
            self.stop_button.disabled = True
            self.step.value = ""

    def wait(self, timeout: float | None = None) -> "Workbench":
        """Block until the running action ends (scripts and tests: `Workbench("model.onnx").wait().report`)."""
        if self._worker is not None:
            self._worker.join(timeout)
        return self

    def stop(self) -> None:
        """End the running action at its next step (calibration batch, compared batch, diagnosis cycle, timed
        iteration)."""
        if self._watch is not None:
            self._watch.stop.set()
            self._status("stopping …")

    def _show_step(self, text: str) -> None:
        self.step.value = f"<span style='color:gray'>{html.escape(text)}</span>"

    # ---- model and configuration ------------------------------------------------------------------------------
    @_guard
    def _load_from_picker(self) -> None:
        self.load(self.path.value.strip() or self.zoo_picker.value)

    @_guard
    def load(self, model: Any, example_inputs: Any = None, **torch_options: Any) -> None:
        from workbench.zoo import load_model

        self.model = load_model(model, example_inputs, **torch_options)
        self._reset()
        # a torch module or a ModelHandle: the snippets read its exported ONNX file, so they run as printed
        self.source = model if isinstance(model, str) else str(self.model.path)
        if isinstance(model, str) and model in self.zoo_picker.options:
            self.zoo_picker.value = model  # the picker shows what is loaded
        info = self.model.describe()
        shapes = ", ".join(f"{s['name']} {s['dtype']} {list(s['shape'])}" for s in info["inputs"])
        self.model_info.value = (f"<b>{html.escape(info['name'])}</b>: {info['nodes']} nodes, opset {info['opset']}"
                                 f" · inputs {html.escape(shapes)}")
        modules = {k: v for k, v in self.model.module_of.items() if v and not v.startswith("_")}  # torch internals
        self.exclude.options = [(f"{n.name} ({n.op_type}" + (f", {modules[n.name]}" if n.name in modules else "")
                                    + ")", n.name) for n in self.model.proto.graph.node
                                   if n.op_type not in NOT_EXCLUDABLE]
        fixed = {s.shape[0] for s in self.model.inputs if s.shape and isinstance(s.shape[0], int)}
        self.batches.value = str(next(iter(fixed))) if len(fixed) == 1 else DEFAULT_BATCHES
        self._profile_boxes()
        self._show_data()
        self._status(f"loaded {info['name']}")

    def _reset(self) -> None:
        """A new model: nothing of the last one's results, diagnosis, data or report survives."""
        self.report = self.transformed = self.diagnosis = self.latency_report = self.tradeoff = None
        self.selected_node = None
        self.worst_inputs.value = self.diagnosis_worst.value = self.diagnosis_text.value = ""
        self.layer_detail.value = ""
        self.graph_node.value = "<i>click a node</i>"
        self.apply_button.disabled, self.apply_button.description = True, "Apply suggested recipe"
        self.report_button.disabled = True
        self.toggle_button.disabled = self.histogram_button.disabled = True
        for figure in (self.layer_figure, self.ranking_figure, self.batch_figure, self.distribution_figure,
                       self.tradeoff_figure, self.histogram_figure):
            figure.data = []
        self.graph_view.graph = {}
        self.data_sources, self.datasets = {"calib": None, "eval": None}, {"calib": None, "eval": None}
        self._quiet_files = True
        self.calib_file.value = self.eval_file.value = ""
        self._quiet_files = False
        self.python_code.value = self.cli_code.value = ""

    # ---- data ----------------------------------------------------------------------------------------------------
    @_guard
    def set_data(self, calib: Any = None, evaluation: Any = None) -> None:
        """Calibration and evaluation data for the loaded model: .npz paths, dicts of arrays, iterables of batches
        (a DataLoader) or Datasets; None: the model's own splits, else random data shaped by the profile (warned).
        Read and checked against the model's inputs now, so a mistake is a message here, not at the next run."""
        from workbench.model.data import as_dataset

        if self.model is None:
            raise WorkbenchError("load a model first, then give its data")
        for role, source, box in (("calib", calib, self.calib_file), ("eval", evaluation, self.eval_file)):
            if isinstance(source, str) and not source.strip():
                source = None
            origin = "calibration data" if role == "calib" else "evaluation data"
            dataset = None if source is None else as_dataset(source, self.model.inputs, origin=origin)
            self.data_sources[role], self.datasets[role] = source, dataset
            self._quiet_files = True
            box.value = str(source) if isinstance(source, (str, os.PathLike)) else ""
            self._quiet_files = False
        self._profile_boxes()  # sizes from the data
        self._show_data()

    def _on_data_file(self, role: str, change: dict) -> None:
        if getattr(self, "_quiet_files", False) or self.model is None:
            return
        if self._busy_elsewhere():
            self._status("busy: the data changes when the running step ends; set it again then")
            return
        other = "eval" if role == "calib" else "calib"
        given = {role: change["new"].strip() or None, other: self.data_sources[other]}
        self.set_data(given["calib"], given["eval"])
        if self.data_sources[role] == given[role]:
            self._status(f"{'calibration' if role == 'calib' else 'evaluation'} data set: Build & compare uses it")

    def _show_data(self) -> None:
        """Which data each step uses, and a visible warning whenever it is random."""
        parts, random = [], []
        for role, title in (("calib", "calibration"), ("eval", "evaluation")):
            dataset, source = self.datasets[role], self.data_sources[role]
            if dataset is not None:
                name = html.escape(str(source)) if isinstance(source, (str, os.PathLike)) else "data given in Python"
                parts.append(f"{title}: {name} ({len(dataset)} samples)")
            elif self.model is not None and self.model.zoo is not None:
                parts.append(f"{title}: the zoo model's own split")
            else:
                random.append(title)
        warning = (f"<br><b style='color:#b35806'>⚠ {' and '.join(random)}: RANDOM data shaped by the optimization "
                   "profile — its numbers say nothing about your model on real inputs; give .npz files in the "
                   "calibration and evaluation fields</b>" if random else "")
        self.data_note.value = f"<span style='color:gray'>{' · '.join(parts)}</span>{warning}"

    def _profile_boxes(self) -> None:
        """One min,opt,max box per input, defaulting from the model's metadata (an Ultralytics `imgsz`) and the
        data's shapes (model.profiles.profile_hints)."""
        from workbench.model.profiles import default_profile, profile_hints

        hints = profile_hints(self.model, self.datasets["calib"], self.datasets["eval"])
        texts = []
        for p in default_profile(self.model.inputs, hints=hints).inputs:
            box = w.Text(value=p.text().split(":", 1)[1], description=p.name, continuous_update=True,
                         layout=w.Layout(width="360px"))
            box.observe(lambda _: self.validate_profile(), names="value")
            texts.append(box)
        self.profile_box.children = texts
        self.validate_profile()

    def _data_outside_profile(self, profile) -> list[str]:
        """The data a run uses that an engine built with `profile` would reject, in words for this panel."""
        problems = []
        for role, title in (("calib", "calibration"), ("eval", "evaluation")):
            if self.datasets[role] is not None:
                problems += [f"{title} data: {p}" for p in profile.violations(self.datasets[role].slice(0, 1))]
        return problems

    def shapes(self) -> list[str]:
        return [f"{box.description}:{box.value.strip()}" for box in self.profile_box.children]

    def validate_profile(self) -> bool:
        """Validated as you type: one line saying what is wrong, or that the profile is valid."""
        from workbench.model.profiles import build_profile

        try:
            outside = self._data_outside_profile(
                build_profile(self.model.inputs, self.shapes(), where="the optimization profile"))
        except WorkbenchError as exc:
            self.profile_message.value = f"<span style='color:crimson'>✗ {html.escape(str(exc))}</span>"
            return False
        if outside:
            self.profile_message.value = (
                "<span style='color:#b35806'>⚠ " + html.escape("; ".join(outside)) + ": a TensorRT engine built "
                "with this profile would reject it; widen min/max in the boxes above (ONNX Runtime runs it)</span>")
            return True
        self.profile_message.value = "<span style='color:green'>✓ valid profile</span>"
        return True

    def _fields(self, *kinds: str) -> list:
        """The form's widgets of these kinds, in field order (a new Recipe field lands in its row)."""
        return [self.form.widgets[s.name] for s in FIELDS if s.widget in kinds]

    def recipe(self) -> Recipe:
        """The recipe the widgets show (fields that do not apply to the precision at their defaults)."""
        return self.form.recipe()

    def _calib(self):
        from workbench.model.defaults import calibration_data

        return calibration_data(self.model, self.datasets["calib"], shapes=self.shapes())

    def _eval(self, limit: int | None = None):
        from workbench.model.defaults import evaluation_data

        return evaluation_data(self.model, self.datasets["eval"], shapes=self.shapes()).take(limit or self.eval_limit)

    def _backend(self):
        from workbench.model.profiles import build_profile

        profile = build_profile(self.model.inputs, self.shapes(), where="the optimization profile")
        return get_backend(self.backend.value, profile=profile)

    def task_spec(self) -> str:
        """The task field: a name (auto when empty) or a user's metric, `file.py:function` / `module:function`."""
        return self.task.value.strip() or "auto"

    def _busy_elsewhere(self) -> bool:
        return (self._worker is not None and self._worker.is_alive()
                and threading.current_thread() is not self._worker)

    def _revert(self, widget: w.ValueWidget, value: Any) -> None:
        """Put a widget back to what the shown results were computed with (a click refused while busy)."""
        self._reverting = True
        try:
            widget.value = value
        finally:
            self._reverting = False

    def _toggled(self, widget: w.ValueWidget, kept: str, start: Callable[[dict], None], change: dict) -> None:
        """A toggle that starts work: refused while another action runs, and then put back (`kept` says so, with
        the change's `{old}` value), so the widgets keep showing what the results were computed with."""
        if getattr(self, "_reverting", False):
            return
        if self._busy_elsewhere() and self._refining.is_set():  # a toggle's full comparison: the new toggle wins
            self.stop()
            self.wait(10)
        if self._busy_elsewhere():
            self._revert(widget, change["old"])
            self._status(f"busy: wait for the running step or press Stop ({kept.format(**change)})")
            return
        start(change)

    def _on_precision(self) -> None:
        if self.model is not None:
            self.run()

    # ---- actions -----------------------------------------------------------------------------------------------
    @_guard
    def run(self, reuse_local: bool = False, preview: int | None = None) -> None:
        """Build the current recipe and compare every layer with FP32 (re-quantizing reuses cached ranges).
        `reuse_local`: a node's local SQNR (quantized alone on exact FP32 inputs) does not depend on which other
        nodes are excluded, so a precision toggle keeps the last ones and skips that pass (about a third of the
        comparison). `preview`: first show the comparison on that many samples (their FP32 side kept between
        toggles, so only the candidate runs), then the full one; a new toggle meanwhile stops the full one."""
        from workbench.precision.transform import apply

        if self.model is None:
            raise WorkbenchError("load a model first")
        recipe = self.recipe()
        started = time.perf_counter()
        self.progress.value, self.progress.bar_style = 0, "info"
        self._status(f"building {recipe.label} …")
        calib = self._calib() if recipe.precision != "fp32" else None
        self.progress.value = 1
        transformed = apply(self.model, recipe, calib, progress=False)
        self.progress.value = 2
        previous = self.report if reuse_local else None
        backend = self._backend()
        data = self._eval()
        self.timings = {"built_s": transformed.seconds}
        for part in ([data.take(preview)] if preview and preview < len(data) else []) + [data]:
            self._compare_part(transformed, backend, part, data, previous)
            self.timings["preview_s" if len(part) < len(data) else "compared_s"] = time.perf_counter() - started
        self._refining.clear()
        self.progress.value, self.progress.bar_style = 3, "success"
        if previous is None and recipe.precision == "int8":  # the graph view's toggles reuse the FP32 side
            threading.Thread(target=self._prepare_reference, args=(transformed, backend), daemon=True,
                             name="workbench-reference").start()
        self._status(f"{recipe.label}: {self.report.summary()} ({transformed.seconds:.2f} s to build)")
        self._update_code()

    def _compare_part(self, transformed, backend, part, data, previous) -> None:
        """Compare on `part` of the evaluation data and show it; a preview (part of it) then says the rest runs."""
        from workbench.analysis.compare import compare

        label = transformed.recipe.label
        shown = f"{len(part)} of {len(data)} samples (preview)" if len(part) < len(data) else f"{len(data)} samples"
        self._status(f"comparing {label} with FP32 on {shown} …")
        report = compare(transformed, part, backend, framework=False, progress=False,
                         local_sensitivity=previous is None, reuse_reference=previous is not None,
                         task=self.task_spec())
        self._show_report(transformed, report, part, previous, layers=len(part) == len(data))
        if len(part) < len(data):
            self._status(f"{label}, preview on {shown}: {report.summary()}; comparing all {len(data)} samples …")
            if self.selected_node is not None:
                self.select_graph_node(self.selected_node)
            self._refining.set()

    def _show_report(self, transformed, report, data, previous, layers: bool = True) -> None:
        """The graph view, and with `layers` the layer plot and the worst inputs, from one comparison."""
        self.report = report
        if previous is not None:  # what each node does quantized alone, whichever nodes this recipe keeps out
            report.local_sqnr = dict(previous.local_sqnr)
        if layers:
            self.worst_inputs.value = worst_inputs_html(report.verdict, data)
            _show(self.layer_figure, plots.layer_figure(report, transformed.recipe.exclude))
            for trace in self.layer_figure.data:
                trace.on_click(self._on_layer_click)
        self._update_graph(transformed)

    @staticmethod
    def _prepare_reference(transformed, backend) -> None:
        """Build the FP32 marked engine the next precision toggle compares against, while the user reads the
        graph (an optimisation: if it fails, the toggle builds it and reports what went wrong)."""
        from workbench.analysis.compare import prepare_reference

        try:
            prepare_reference(transformed, backend)
        except Exception as exc:
            LOGGER.debug("reference engine not prepared ahead: %s", one_line(exc))

    def _on_layer_click(self, trace: Any, points: Any, selector: Any) -> None:
        if points.point_inds:
            self.select_node(trace.customdata[points.point_inds[0]])

    def select_node(self, node: str) -> None:
        """Show a layer's statistics and offer to toggle its exclusion."""
        rows = self.report.layers[self.report.layers["node"] == node]
        if rows.empty:
            return
        r = rows.iloc[0]
        self.selected_node = node
        local = "" if r["local_sqnr_db"] != r["local_sqnr_db"] or r["local_sqnr_db"] is None else \
            f"<br>alone: {r['local_sqnr_db']:.1f} dB"
        self.layer_detail.value = (f"<b>{html.escape(node)}</b> ({r['op_type']}"
                                   f"{', module ' + html.escape(str(r['module'])) if r['module'] else ''})<br>"
                                   f"SQNR {r['sqnr_db']:.1f} dB · cosine {r['cosine']:.5f} · max |Δ| {r['max_abs']:.3g}"
                                   f"{local}")
        kept = node in self.exclude.value
        self.toggle_button.description = "Quantize this node again" if kept else "Keep this node in FP32"
        self.toggle_button.disabled = self.precision.value not in ("int8", "fp16")

    def _update_graph(self, transformed) -> None:
        """Recolour the graph view from the latest comparison (a new layout only when the graph changed)."""
        higher = {n: transformed.recipe.fallback_precision for n in transformed.excluded_nodes}
        higher.update({n: "fp32" for n in transformed.kept_in_fp32 if n not in higher})
        self.transformed = transformed
        self.graph_view.graph = graph_payload(self.report, transformed.fp32.proto.graph, transformed.quantized_nodes,
                                              higher)

    def select_graph_node(self, node: str) -> None:
        """A click in the graph view: the node's numbers and the precision it runs in."""
        found = next((n for n in self.graph_view.graph.get("nodes", []) if n["id"] == node), None)
        if found is None:
            return
        self.selected_node = node

        def db(value: float | None) -> str:
            return "—" if value is None else f"{value:.1f} dB"

        module = f"<br>module {html.escape(found['module'])}" if found.get("module") else ""
        self.graph_node.value = (f"<b>{html.escape(node)}</b> ({html.escape(found['op'])}){module}<br>"
                                 f"local SQNR (quantized alone): {db(found['local_sqnr_db'])}<br>"
                                 f"output SQNR: {db(found['sqnr_db'])}<br>runs in: {found['precision'] or 'float'}"
                                 + ("<br><b style='color:#b2182b'>first divergence</b>" if found["divergence"] else ""))
        toggle = self.precision.value == "int8" and found["precision"] is not None
        with self.node_precision.hold_trait_notifications():
            self.node_precision.disabled = not toggle
            self.node_precision.value = (found["precision"] or "fp32").upper() if toggle else None
        self.histogram_button.disabled = self._input_tensor(node) is None

    def _input_tensor(self, node: str) -> str | None:
        """The quantized activation a node reads (its first data input that the recipe quantizes)."""
        rows = self.report.layers
        quantized = set(rows.loc[rows["quantized"].astype(bool), "tensor"])
        proto = next((n for n in self.transformed.fp32.proto.graph.node if n.name == node), None)
        return next((t for t in (proto.input if proto is not None else []) if t in quantized), None)

    @_guard
    def set_node_precision(self, precision: str | None) -> None:
        """The graph view's toggle: INT8 quantizes the node again, FP16/FP32 keep it out of INT8 (one fallback
        precision per recipe: choosing FP16 here runs every kept node in FP16)."""
        node = self.selected_node
        if precision is None or node is None or self.node_precision.disabled:
            return
        current = next((n["precision"] for n in self.graph_view.graph["nodes"] if n["id"] == node), None)
        if current == precision.lower():
            return
        chosen = set(self.exclude.value) - {node} if precision == "INT8" else set(self.exclude.value) | {node}
        with self.precision.hold_trait_notifications():
            if precision != "INT8":
                self.fallback_precision.value = precision.lower()
            self.form.set("exclude", chosen)
        self.run(reuse_local=True, preview=PREVIEW_SAMPLES)
        self.select_graph_node(node)

    @_guard
    def show_histogram(self) -> None:
        """The selected node's input activation over the calibration data, with each calibration method's range."""
        from workbench.precision.calibration import histogram, method_ranges
        from workbench.precision.quantize import placement_options

        tensor = self._input_tensor(self.selected_node)
        if tensor is None:
            return
        fp32 = self.transformed.fp32
        self._status(f"histogram of '{tensor}' …")
        counts, edges, amax = histogram(fp32, self._calib(), tensor)
        ranges = method_ranges(fp32, self._calib(), tensor, placement_options(self.placement.value)[0])
        _show(self.histogram_figure, plots.histogram_figure(tensor, counts, edges, ranges, amax))
        self._status(f"histogram of '{tensor}' with the minmax, entropy and percentile ranges")

    @_guard
    def toggle_selected(self) -> None:
        if self.selected_node is None:
            return
        chosen = set(self.exclude.value) ^ {self.selected_node}
        self.form.set("exclude", chosen)
        self.run()

    @_guard
    def run_diagnosis(self) -> None:
        from workbench.analysis.diagnose import diagnose

        if self.model is None:
            raise WorkbenchError("load a model first")
        recipe = replace(self.recipe(), precision="int8", exclude=())  # the widgets' recipe, no fallback yet
        self._status("diagnosing INT8 …")
        self.progress.value, self.progress.bar_style = 1, "info"
        self.diagnosis = diagnose(self.model, recipe, self._calib(), self._eval(), backend=self._backend(),
                                  progress=False, task=self.task_spec())
        self.progress.value, self.progress.bar_style = 3, "success"
        self.diagnosis_text.value = f"<p>{html.escape(self.diagnosis.explanation)}</p>"
        self.diagnosis_worst.value = worst_inputs_html(self.diagnosis.after, self._eval())
        _show(self.ranking_figure, plots.ranking_figure(self.diagnosis))
        suggested = self.diagnosis.recipe
        self.apply_button.disabled = suggested == recipe
        self.apply_button.description = (f"Apply suggested recipe: {suggested.label}" if suggested != recipe
                                          else "Nothing to apply")
        self.report_button.disabled = False
        runs, budget = self.diagnosis.evaluations, self.diagnosis.budget + self.diagnosis.remedies_tried
        ranked = self.diagnosis.ranking_runs
        self._status(f"diagnosis done in {runs} quantize + evaluate cycle{'s' if runs != 1 else ''} (budget {budget})"
                     + (f" and {ranked} ranking runs on {self.diagnosis.ranking_samples} samples" if ranked else ""))

    @_guard
    def apply_fallback(self) -> None:
        """Apply the diagnosed recipe, all of it (placement, clean-up, overrides, rescalings, fallback), and rerun."""
        if not self.diagnosis:
            return
        self.set_recipe(self.diagnosis.recipe)
        if self.precision.value != "int8":
            self.precision.value = "int8"  # triggers run()
        else:
            self.run()

    @_guard
    def save_report(self, path: str | None = None) -> str:
        """Write the diagnosis (with the last latency sweep and trade-off, if any) as one HTML file; returns its
        path (default: <model>-diagnosis.html in the working directory)."""
        from pathlib import Path

        from workbench.app.report import write_diagnosis_html

        if self.diagnosis is None:
            raise WorkbenchError("run a diagnosis first")
        target = Path(path or f"{self.model.name}-diagnosis.html".replace("/", "_").replace(" ", "_"))
        write_diagnosis_html(target, self.diagnosis, self.model.name, latency=self.latency_report,
                             tradeoff=self.tradeoff)
        self._status(f"report saved to {target.resolve()}")
        return str(target)

    def set_recipe(self, recipe: Recipe) -> None:
        """Show a recipe in the widgets but its precision (changing that runs; apply_fallback does it last)."""
        self.form.show(recipe, skip=("precision",))

    @_guard
    def run_latency(self) -> None:
        from workbench.analysis.bench import parse_batches, sweep, tradeoff

        recipes = list(dict.fromkeys([Recipe("fp32"), self.recipe()] + (
            [self.diagnosis.recipe] if self.diagnosis is not None else [])))
        calib = self._calib() if any(r.precision != "fp32" for r in recipes) else None
        self._status("measuring latency …")
        backend = self._backend() if self.backend.value != "onnxruntime-cpu" else get_backend(optimization="all")
        batches = parse_batches(self.batches.value)
        data = self._eval(64)
        if data.fixed_batch and set(batches) != {data.fixed_batch}:
            raise WorkbenchError(f"batches: the model's batch dimension is fixed to {data.fixed_batch}; "
                                 f"enter {data.fixed_batch}")
        report = sweep(self.model, recipes, batches, calib, data, backend, iterations=self.iterations.value,
                       progress=False)
        _show(self.batch_figure, plots.batch_figure(report))
        _show(self.distribution_figure, plots.latency_distribution(report))
        self.latency_report = report
        self.tradeoff = tradeoff(self.model, recipes, calib, data, batch=batches[0], latency=report)
        _show(self.tradeoff_figure, plots.pareto_figure(self.tradeoff))
        self._status(f"latency measured on {report.label}")

    @_guard
    def run_engine(self) -> None:
        """The current recipe's engine (built by the installed TensorRT, or read from a captured layer info file):
        its layers mapped to the graph, the recipe's precision claims checked, the graph coloured by precision."""
        from workbench.analysis.engine import engine_view

        if self.transformed is None:
            raise WorkbenchError("compare first: the engine is built from the model the current recipe makes")
        self._status("building the engine …")
        view = engine_view(str(self.transformed.path), layer_info=self.layer_info.value.strip() or None)
        self.engine = view
        self.engine_text.value = "<br>".join(html.escape(line) for line in view.summary())
        self.engine_graph.graph = engine_payload(view.graph, view.report)
        self._status(f"engine: {len(view.report.layers)} layers from {view.report.runtime}")

    def code_setup(self) -> CodeSetup:
        """What the last run used, for the Code tab: data the app holds only in memory is saved as an .npz in the
        cache (named by its content) so the script and the CLI line read exactly those samples."""
        paths, notes, axes = {}, [], {}
        for role, title in (("calib", "calibration"), ("eval", "evaluation")):
            source, dataset = self.data_sources[role], self.datasets[role]
            if dataset is None:
                paths[role] = None
                continue
            if isinstance(source, (str, os.PathLike)):
                paths[role] = str(source)
            else:
                paths[role] = str(dataset.saved())
                notes.append(f"the {title} data given in Python, saved by the app to {paths[role]}")
            axes.update({k: v for k, v in dataset.sample_axes.items() if v != 0})
        return CodeSetup(self.source, self.recipe(), tuple(self.shapes()), self.backend.value, self.eval_limit,
                         paths["calib"], paths["eval"], self.task_spec(), axes, tuple(notes))

    def _update_code(self) -> None:
        setup = self.code_setup()
        self.python_code.value = python_snippet(setup)
        self.cli_code.value = cli_command(setup)

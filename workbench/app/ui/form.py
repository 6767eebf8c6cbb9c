"""The recipe's widgets: one per Recipe field, made from the field's spec (precision.recipe.FieldSpec), so a new
field appears in the app without an edit here."""
from __future__ import annotations

from typing import Any, Iterable

import ipywidgets as w

from workbench.precision.recipe import FIELDS, FieldSpec, Recipe

_SPECS = {spec.name: spec for spec in FIELDS}


def _widget(spec: FieldSpec) -> w.Widget:
    common = {"description": spec.label, "tooltip": spec.help}
    if spec.widget == "toggle":
        return w.ToggleButtons(options=list(spec.choices), value=spec.default, **common)
    if spec.widget == "checkbox":
        return w.Checkbox(value=spec.default, indent=False, **common)
    if spec.widget == "float":
        low, high, step = spec.bounds
        return w.BoundedFloatText(value=spec.default, min=low, max=high, step=step, **common)
    if spec.widget == "text":
        return w.Text(placeholder=f"{spec.metavar} …", layout=w.Layout(width="420px"), **common)
    if spec.widget == "nodes":  # options (label, node name) are set when a model loads
        return w.SelectMultiple(options=[], rows=8, layout=w.Layout(width="420px"), **common)
    return w.Dropdown(options=list(spec.choices), value=spec.default, **common)


def _read(spec: FieldSpec, widget: w.Widget) -> Any:
    if spec.widget == "text":
        return tuple(widget.value.replace(",", " ").split())
    if spec.widget == "nodes":
        return tuple(widget.value)
    return widget.value


def _write(spec: FieldSpec, widget: w.Widget, value: Any) -> None:
    if spec.widget == "text":
        widget.value = " ".join(value)
    elif spec.widget == "nodes":  # in the list's (graph) order; names the model lacks cannot be selected
        chosen = set(value)
        widget.value = tuple(name for _, name in widget.options if name in chosen)
    else:
        widget.value = value


class RecipeForm:
    """`widgets[field]` for every Recipe field; `recipe()` reads them, `show()` sets them."""

    def __init__(self, **initial: Any) -> None:
        self.widgets: dict[str, w.Widget] = {spec.name: _widget(spec) for spec in FIELDS}
        for name, value in initial.items():
            self.widgets[name].value = value

    def recipe(self) -> Recipe:
        """The recipe shown, with the fields that do not apply to its precision at their defaults."""
        return Recipe(**{s.name: _read(s, self.widgets[s.name]) for s in FIELDS}).normalized()

    def show(self, recipe: Recipe, skip: Iterable[str] = ()) -> None:
        """Set every field's widget but those in `skip` (the app sets the precision last: changing it runs)."""
        for spec in FIELDS:
            if spec.name not in skip:
                self.set(spec.name, getattr(recipe, spec.name))

    def set(self, name: str, value: Any) -> None:
        """Set one field's widget, e.g. the nodes kept out of INT8 after a toggle in the graph view."""
        _write(_SPECS[name], self.widgets[name], value)

// The workbench graph view: lays out the payload Python sends (dagre, top to bottom), draws it as SVG, zooms and
// pans, reports clicks. No numbers are computed here: colours, badges and labels come from Python.
const SVG = "http://www.w3.org/2000/svg";

function el(name, attrs, parent) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (parent) parent.appendChild(node);
  return node;
}

function fmt(value) {
  return value === null || value === undefined ? "—" : `${value.toFixed(1)} dB`;
}

function draw(model, root, state) {
  const start = performance.now();
  const payload = model.get("graph") || {};
  const nodes = payload.nodes || [];
  const edges = payload.edges || [];
  root.innerHTML = "";
  root.style.display = "block";
  root.style.width = "100%";
  const svg = el("svg", {width: "100%", height: model.get("height"), class: "wb-graph",
                         style: "display:block;min-width:780px"}, root);
  const view = el("g", {}, svg);
  const g = new dagre.graphlib.Graph();
  g.setGraph({rankdir: "TB", nodesep: 18, ranksep: 28, marginx: 10, marginy: 10});
  g.setDefaultEdgeLabel(() => ({}));
  for (const n of nodes) {
    const width = Math.max(70, 7 * Math.max(n.op.length, Math.min(n.label.length, 28)) + 16);
    g.setNode(n.id, {width, height: 34, data: n});
  }
  for (const e of edges) g.setEdge(e.source, e.target, {data: e});
  dagre.layout(g);
  for (const id of g.edges()) {
    const edge = g.edge(id);
    const points = edge.points.map((p) => `${p.x},${p.y}`).join(" ");
    el("polyline", {points, fill: "none", stroke: "#9a9a9a", "stroke-width": 1}, view);
    if (edge.data && edge.data.qdq) {
      const mid = edge.points[Math.floor(edge.points.length / 2)];
      const badge = el("g", {class: "wb-qdq"}, view);
      el("rect", {x: mid.x - 9, y: mid.y - 6, width: 18, height: 12, rx: 3, fill: "#ff7f0e"}, badge);
      const t = el("text", {x: mid.x, y: mid.y + 4, "text-anchor": "middle", "font-size": 8, fill: "white"}, badge);
      t.textContent = "Q";
      el("title", {}, badge).textContent = `${edge.data.tensor}: INT8 (Q/DQ)`;
    }
  }
  for (const id of g.nodes()) {
    const box = g.node(id);
    const n = box.data;
    const group = el("g", {class: "wb-node", "data-id": id, transform: `translate(${box.x - box.width / 2},${box.y - box.height / 2})`, style: "cursor:pointer"}, view);
    const higher = n.precision === "fp32" || n.precision === "fp16";
    el("rect", {width: box.width, height: box.height, rx: 4, fill: n.color,
                stroke: n.divergence ? "#b2182b" : (higher ? "#222" : "#777"),
                "stroke-width": n.divergence || higher ? 3 : 1, "stroke-dasharray": n.divergence ? "5,3" : ""}, group);
    const op = el("text", {x: 6, y: 13, "font-size": 11, "font-weight": 600}, group);
    op.textContent = n.op + (higher ? ` · ${n.precision.toUpperCase()}` : "");
    const label = el("text", {x: 6, y: 27, "font-size": 9, fill: "#333"}, group);
    label.textContent = n.label.length > 28 ? n.label.slice(0, 27) + "…" : n.label;
    el("title", {}, group).textContent =
      `${n.label} (${n.op})\nlocal SQNR ${fmt(n.local_sqnr_db)}, output SQNR ${fmt(n.sqnr_db)}` +
      (n.precision ? `\nprecision ${n.precision}` : "") + (n.divergence ? "\nfirst divergence" : "");
    group.addEventListener("click", () => { model.set("selected", id); model.save_changes(); });
  }
  state.size = {w: g.graph().width, h: g.graph().height};
  const fit = Math.min(1, (root.clientWidth || 900) / (state.size.w || 1));
  state.scale = state.scale || fit;
  state.x = state.x || 0;
  state.y = state.y || 0;
  const apply = () => view.setAttribute("transform", `translate(${state.x},${state.y}) scale(${state.scale})`);
  apply();
  svg.addEventListener("wheel", (ev) => {
    ev.preventDefault();
    const factor = ev.deltaY < 0 ? 1.15 : 1 / 1.15;
    const r = svg.getBoundingClientRect();
    const mx = ev.clientX - r.left, my = ev.clientY - r.top;
    state.x = mx - (mx - state.x) * factor;
    state.y = my - (my - state.y) * factor;
    state.scale *= factor;
    apply();
  });
  let drag = null;
  svg.addEventListener("mousedown", (ev) => { drag = {x: ev.clientX - state.x, y: ev.clientY - state.y}; });
  window.addEventListener("mouseup", () => { drag = null; });
  svg.addEventListener("mousemove", (ev) => {
    if (drag) { state.x = ev.clientX - drag.x; state.y = ev.clientY - drag.y; apply(); }
  });
  model.set("render_ms", performance.now() - start);
  model.save_changes();
}

function recolour(model, root) {
  // Same graph, new numbers (a precision toggle): repaint fills and badges without a new layout.
  const start = performance.now();
  const byId = new Map((model.get("graph").nodes || []).map((n) => [n.id, n]));
  for (const group of root.querySelectorAll("g.wb-node")) {
    const n = byId.get(group.getAttribute("data-id"));
    if (!n) continue;
    const rect = group.querySelector("rect");
    const higher = n.precision === "fp32" || n.precision === "fp16";
    rect.setAttribute("fill", n.color);
    rect.setAttribute("stroke", n.divergence ? "#b2182b" : (higher ? "#222" : "#777"));
    rect.setAttribute("stroke-width", n.divergence || higher ? 3 : 1);
    rect.setAttribute("stroke-dasharray", n.divergence ? "5,3" : "");
    group.querySelector("text").textContent = n.op + (higher ? ` · ${n.precision.toUpperCase()}` : "");
  }
  model.set("render_ms", performance.now() - start);
  model.save_changes();
}

function render({model, el: root}) {
  const state = {};
  let structure = null;
  const update = () => {
    const payload = model.get("graph") || {};
    if (structure !== null && payload.structure === structure && root.querySelector("g.wb-node")) {
      recolour(model, root);
    } else {
      structure = payload.structure;
      draw(model, root, state);
    }
  };
  model.on("change:graph", update);
  update();
}

export default {render};

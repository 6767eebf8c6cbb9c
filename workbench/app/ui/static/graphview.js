// The workbench graph view: lays out the payload Python sends (dagre, top to bottom), draws it as SVG, zooms and
// pans, searches by name, collapses module scopes, reports clicks. No numbers are computed here: colours, text
// colours, badges, labels, shapes and scope summaries come from Python (workbench/app/graphview.py).
const SVG = "http://www.w3.org/2000/svg";
const SELECTED = "#ff7f0e";

function el(name, attrs, parent) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (parent) parent.appendChild(node);
  return node;
}

function html(tag, attrs, parent, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  if (parent) parent.appendChild(node);
  return node;
}

function fmt(value) {
  return value === null || value === undefined ? "—" : `${value.toFixed(1)} dB`;
}

function legend(payload, parent) {
  // What the colours, borders and badges mean, from the payload's own scale.
  const box = html("div", {class: "wb-legend", style: "font:11px sans-serif;color:#333;display:flex;gap:10px;" +
                           "align-items:center;flex-wrap:wrap;margin:2px 0"}, parent);
  for (const item of payload.legend || []) {
    const entry = html("span", {style: "display:inline-flex;align-items:center;gap:3px"}, box);
    html("span", {style: `display:inline-block;width:14px;height:10px;background:${item.color};` +
                         `border:${item.border || "1px solid #777"}`}, entry);
    html("span", {}, entry, item.label);
  }
  return box;
}

function displayGraph(payload, state) {
  // Nodes inside a collapsed scope become that scope's one box; edges between boxes are merged.
  const depth = state.depth || 0;
  const owner = new Map();
  for (const n of payload.nodes || []) {
    let id = n.id;
    for (let d = 0; d < Math.min(depth, (n.scopes || []).length); d++) {
      const scope = n.scopes[d];
      if (!state.expanded.has(scope)) { id = `scope:${scope}`; break; }
    }
    owner.set(n.id, id);
  }
  const nodes = new Map();
  for (const n of payload.nodes || []) {
    const id = owner.get(n.id);
    if (id === n.id) nodes.set(id, {kind: "node", data: n});
    else if (!nodes.has(id)) nodes.set(id, {kind: "scope", scope: id.slice(6), data: payload.scopes[id.slice(6)]});
  }
  const edges = new Map();
  (payload.edges || []).forEach((e, index) => {
    const s = owner.get(e.source), t = owner.get(e.target);
    if (s === undefined || t === undefined || s === t) return;
    const key = `${s}\u0000${t}`;
    if (!edges.has(key)) edges.set(key, {source: s, target: t, data: e, index});
  });
  return {nodes, edges};
}

function draw(model, root, state) {
  const start = performance.now();
  const payload = model.get("graph") || {};
  root.innerHTML = "";
  root.style.display = "block";
  root.style.width = "100%";
  if (!(payload.nodes || []).length) return;
  const bar = html("div", {style: "display:flex;gap:8px;align-items:center;font:12px sans-serif;margin:2px 0"}, root);
  const search = html("input", {type: "search", placeholder: "find a node or tensor…", class: "wb-search",
                                style: "width:220px"}, bar);
  const found = html("span", {class: "wb-found", style: "color:#555"}, bar);
  const maxDepth = payload.max_scope_depth || 0;
  if (maxDepth) {
    html("span", {}, bar, "collapse scopes deeper than");
    const pick = html("select", {class: "wb-depth"}, bar);
    for (let d = 0; d <= maxDepth; d++) {
      const option = html("option", {value: d}, pick, d === 0 ? "off" : String(d));
      if (d === (state.depth || 0)) option.selected = true;
    }
    pick.addEventListener("change", () => {
      state.depth = Number(pick.value);
      state.expanded = new Set();
      draw(model, root, state);
    });
  }
  legend(payload, root);
  const svg = el("svg", {width: "100%", height: model.get("height"), class: "wb-graph",
                         style: "display:block;min-width:780px"}, root);
  const view = el("g", {}, svg);
  const shown = displayGraph(payload, state);
  const g = new dagre.graphlib.Graph();
  g.setGraph({rankdir: "TB", nodesep: 18, ranksep: 30, marginx: 10, marginy: 10});
  g.setDefaultEdgeLabel(() => ({}));
  for (const [id, item] of shown.nodes) {
    const text = item.kind === "scope" ? `${item.scope} (${item.data.nodes})` : item.data.op;
    const label = item.kind === "scope" ? "" : item.data.label;
    const width = Math.max(70, 7 * Math.max(text.length, Math.min(label.length, 28)) + 16);
    g.setNode(id, {width, height: 34, item});
  }
  for (const e of shown.edges.values()) g.setEdge(e.source, e.target, {edge: e});
  try {
    dagre.layout(g);
  } catch (error) {
    root.innerHTML = "";
    html("p", {class: "wb-graph-error", style: "color:crimson;font:13px sans-serif"}, root,
         `The graph view could not lay out this graph (${error.message}); every layer is in the Compare tab.`);
    model.set("render_error", String(error.message || error));
    model.save_changes();
    return;
  }
  for (const id of g.edges()) {
    const edge = g.edge(id);
    const e = edge.edge.data;
    const points = edge.points.map((p) => `${p.x},${p.y}`).join(" ");
    const line = el("polyline", {points, fill: "none", stroke: "#9a9a9a", "stroke-width": 1, class: "wb-edge"}, view);
    el("title", {}, line).textContent = `${e.tensor}${e.shape ? " " + e.shape : ""}`;
    const mid = edge.points[Math.floor(edge.points.length / 2)];
    if (e.shape) {
      const t = el("text", {x: mid.x + 11, y: mid.y + 3, "font-size": 7, fill: "#888"}, view);
      t.textContent = e.shape;
    }
    const badge = el("g", {class: "wb-qdq", "data-edge": edge.edge.index,
                           style: e.qdq ? "" : "display:none"}, view);
    el("rect", {x: mid.x - 9, y: mid.y - 6, width: 18, height: 12, rx: 3, fill: "#ff7f0e"}, badge);
    const t = el("text", {x: mid.x, y: mid.y + 4, "text-anchor": "middle", "font-size": 8, fill: "white"}, badge);
    t.textContent = "Q";
    el("title", {}, badge).textContent = `${e.tensor}: INT8 (Q/DQ)`;
  }
  for (const id of g.nodes()) {
    const box = g.node(id);
    const item = box.item;
    const n = item.data;
    const group = el("g", {class: item.kind === "scope" ? "wb-scope" : "wb-node", "data-id": id,
                           transform: `translate(${box.x - box.width / 2},${box.y - box.height / 2})`,
                           style: "cursor:pointer"}, view);
    const rect = el("rect", {width: box.width, height: box.height, rx: 4, fill: n.color}, group);
    const op = el("text", {x: 6, y: 13, "font-size": 11, "font-weight": 600, fill: n.text || "#111"}, group);
    const label = el("text", {x: 6, y: 27, "font-size": 9, fill: n.text || "#333", class: "wb-label"}, group);
    if (item.kind === "scope") {
      rect.setAttribute("stroke", "#555");
      rect.setAttribute("stroke-dasharray", "3,2");
      op.textContent = `${item.scope} (${n.nodes})`;
      label.textContent = n.summary ? `${n.summary} · click to expand` : `worst ${fmt(n.worst_db)} · click to expand`;
      el("title", {}, group).textContent = `${item.scope}: ${n.nodes} nodes, ` +
        (n.summary || `worst ${fmt(n.worst_db)}`);
      group.addEventListener("click", () => { state.expanded.add(item.scope); draw(model, root, state); });
      continue;
    }
    style(group, n, model.get("selected"));
    label.textContent = n.label.length > 28 ? n.label.slice(0, 27) + "…" : n.label;
    el("title", {}, group).textContent =
      `${n.label} (${n.op})` + (n.module ? `\nmodule ${n.module}` : "") +
      `\nlocal SQNR ${fmt(n.local_sqnr_db)}, output SQNR ${fmt(n.sqnr_db)}` +
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
  state.centre = (id) => {
    const box = g.node(id);
    if (!box) return;
    state.scale = Math.max(state.scale, 0.8);
    state.x = (svg.clientWidth || 800) / 2 - box.x * state.scale;
    state.y = (svg.clientHeight || model.get("height")) / 2 - box.y * state.scale;
    apply();
  };
  let hits = [], at = -1;
  search.addEventListener("keydown", (ev) => {
    if (ev.key !== "Enter") return;
    const q = search.value.trim().toLowerCase();
    if (!q) return;
    // a node by its name, or the node that writes a tensor of that name
    const writers = new Set((payload.edges || []).filter((e) => e.tensor.toLowerCase().includes(q)).map((e) => e.source));
    hits = (payload.nodes || []).filter((n) => n.id.toLowerCase().includes(q) || writers.has(n.id)).map((n) => n.id);
    if (!hits.length) { found.textContent = "no match"; return; }
    at = (at + 1) % hits.length;
    const target = hits[at];
    const scopes = (payload.nodes.find((n) => n.id === target) || {}).scopes || [];
    const hidden = scopes.slice(0, state.depth || 0).filter((s) => !state.expanded.has(s));
    found.textContent = `${at + 1} of ${hits.length}: ${target}`;
    model.set("selected", target);
    model.save_changes();
    if (hidden.length) {
      hidden.forEach((s) => state.expanded.add(s));
      draw(model, root, state);
      state.centre(target);
      root.querySelector(".wb-search").value = q;
      return;
    }
    state.centre(target);
  });
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
  model.set("render_error", "");
  model.save_changes();
}

function style(group, n, selected) {
  // Border: the selected node, the first divergence, a node kept in higher precision; fill and text from Python.
  const rect = group.querySelector("rect");
  const higher = n.precision === "fp32" || n.precision === "fp16";
  const chosen = n.id === selected;
  rect.setAttribute("fill", n.color);
  rect.setAttribute("stroke", chosen ? SELECTED : n.divergence ? "#b2182b" : (higher ? "#222" : "#777"));
  rect.setAttribute("stroke-width", chosen ? 4 : n.divergence || higher ? 3 : 1);
  rect.setAttribute("stroke-dasharray", n.divergence && !chosen ? "5,3" : "");
  const [op, label] = group.querySelectorAll("text");
  op.textContent = n.op + (higher ? ` · ${n.precision.toUpperCase()}` : "");
  op.setAttribute("fill", n.text || "#111");
  label.setAttribute("fill", n.text || "#333");
}

function recolour(model, root) {
  // Same graph, new numbers (a precision toggle): repaint fills, text, borders and Q/DQ badges without a new layout.
  const start = performance.now();
  const payload = model.get("graph");
  const byId = new Map((payload.nodes || []).map((n) => [n.id, n]));
  const selected = model.get("selected");
  for (const group of root.querySelectorAll("g.wb-node")) {
    const n = byId.get(group.getAttribute("data-id"));
    if (n) style(group, n, selected);
  }
  const edges = payload.edges || [];
  for (const badge of root.querySelectorAll("g.wb-qdq")) {
    const e = edges[Number(badge.getAttribute("data-edge"))];
    badge.style.display = e && e.qdq ? "" : "none";
  }
  model.set("render_ms", performance.now() - start);
  model.save_changes();
}

function render({model, el: root}) {
  const state = {expanded: new Set(), depth: 0};
  let structure = null;
  const update = () => {
    const payload = model.get("graph") || {};
    if (structure !== null && payload.structure === structure && root.querySelector("g.wb-node")) {
      recolour(model, root);
    } else {
      structure = payload.structure;
      state.depth = 0;
      state.expanded = new Set();
      draw(model, root, state);
    }
  };
  model.on("change:graph", update);
  model.on("change:selected", () => {
    const payload = model.get("graph") || {};
    const byId = new Map((payload.nodes || []).map((n) => [n.id, n]));
    for (const group of root.querySelectorAll("g.wb-node")) {
      const n = byId.get(group.getAttribute("data-id"));
      if (n) style(group, n, model.get("selected"));
    }
  });
  update();
}

export default {render};

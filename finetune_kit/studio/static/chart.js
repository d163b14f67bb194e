// The studio's own small SVG charts (no library): LineChart (several series over a shared x axis, e.g. steps)
// and ScatterChart (labelled points, a Pareto front drawn as a polyline). Both fill their container's width,
// redraw when it resizes, and show the values under the pointer. The <svg> carries data-points (how many points
// are drawn) and, for a scatter, data-front (how many lie on the front); the container carries the same.

import { esc } from "./format.js";

const SVG = "http://www.w3.org/2000/svg";
export const PALETTE = ["#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#65a30d", "#4b5563", "#ea580c", "#0d9488", "#9333ea"];

/** About `count` round tick values covering [min, max]. */
export function niceTicks(min, max, count = 5) {
  if (!Number.isFinite(min) || !Number.isFinite(max)) return { ticks: [0, 1], step: 1 };
  if (min === max) {
    const pad = Math.abs(min) * 0.1 || 1;
    min -= pad;
    max += pad;
  }
  const span = max - min;
  const raw = span / Math.max(1, count);
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const residual = raw / magnitude;
  const step = (residual > 5 ? 10 : residual > 2 ? 5 : residual > 1 ? 2 : 1) * magnitude;
  const start = Math.floor(min / step + 1e-9) * step;
  const end = Math.ceil(max / step - 1e-9) * step;
  const ticks = [];
  for (let v = start, i = 0; v <= end + step * 1e-6 && i < 50; v += step, i++) ticks.push(Math.abs(v) < step * 1e-9 ? 0 : v);
  return { ticks, step };
}

/** A tick label: as many decimals as the step needs. */
export function tickText(value, step) {
  if (value === 0) return "0";
  const abs = Math.abs(value);
  if (abs >= 1e6 || (abs < 1e-4 && abs > 0)) return value.toExponential(1).replace(".0e", "e");
  const decimals = Math.max(0, Math.min(8, -Math.floor(Math.log10(step) + 1e-9)));
  const text = value.toFixed(decimals);
  return abs >= 1e4 ? Number(text).toLocaleString("en-US") : text;
}

function defaultValueText(v) {
  if (typeof v !== "number" || !Number.isFinite(v)) return "–";
  if (v === 0) return "0";
  const abs = Math.abs(v);
  if (Number.isInteger(v) && abs < 1e7) return v.toLocaleString("en-US");
  if (abs >= 1e-3 && abs < 1e7) return String(Number(v.toPrecision(4)));
  return v.toExponential(2);
}

/** [min, max] without spreading (a long run's log has many thousands of points). */
export function extent(values) {
  let min = Infinity;
  let max = -Infinity;
  for (const v of values) {
    if (v < min) min = v;
    if (v > max) max = v;
  }
  return [min, max];
}

function el(name, attrs = {}, parent) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null) node.setAttribute(k, v);
  parent?.append(node);
  return node;
}

/** Shared frame: the svg, the tooltip, the resize observer, axes drawing. */
class Frame {
  constructor(container, options) {
    this.container = typeof container === "string" ? document.querySelector(container) : container;
    this.options = { height: 240, xLabel: "", yLabel: "", empty: "no points yet", valueText: defaultValueText, xText: defaultValueText, ...options };
    this.container.classList.add("chart");
    this.container.innerHTML = "";
    this.svg = el("svg", { role: "img", class: "chart-svg", "data-points": "0" }, this.container);
    if (this.options.title) this.svg.setAttribute("aria-label", this.options.title);
    this.tooltip = document.createElement("div");
    this.tooltip.className = "chart-tooltip";
    this.tooltip.hidden = true;
    this.container.append(this.tooltip);
    this.legend = document.createElement("div");
    this.legend.className = "chart-legend";
    this.container.append(this.legend);
    this.width = 0;
    this.pending = false;
    this.observer = new ResizeObserver(() => {
      const width = Math.floor(this.container.clientWidth);
      if (width && width !== this.width) this.render();
    });
    this.observer.observe(this.container);
    this.svg.addEventListener("pointermove", (e) => this.hover(e));
    this.svg.addEventListener("pointerleave", () => this.unhover());
  }

  /** Redraw on the next frame (many appends in a row draw once). */
  schedule() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => {
      this.pending = false;
      this.render();
    });
  }

  setCount(points, front) {
    this.svg.setAttribute("data-points", String(points));
    this.container.dataset.points = String(points);
    if (front !== undefined) {
      this.svg.setAttribute("data-front", String(front));
      this.container.dataset.front = String(front);
    }
  }

  layout(yTicks) {
    const width = Math.max(240, Math.floor(this.container.clientWidth) || 480);
    this.width = width;
    const height = this.options.height;
    const labelChars = Math.max(...yTicks.map((t) => t.length), 1);
    const left = Math.min(90, 16 + labelChars * 6.6 + (this.options.yLabel ? 14 : 0));
    const m = { top: 12, right: 16, bottom: 38, left };
    this.svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    this.svg.setAttribute("width", String(width));
    this.svg.setAttribute("height", String(height));
    return { width, height, m, plotW: width - m.left - m.right, plotH: height - m.top - m.bottom };
  }

  axes(g, box, xs, ys, xTickText, yTickText) {
    const { m, plotW, plotH, width, height } = box;
    const grid = el("g", { class: "chart-grid" }, g);
    ys.ticks.forEach((t, i) => {
      const y = this.sy(t);
      el("line", { x1: m.left, x2: m.left + plotW, y1: y, y2: y }, grid);
      const label = el("text", { x: m.left - 6, y: y + 4, "text-anchor": "end", class: "chart-tick" }, g);
      label.textContent = yTickText[i];
    });
    xs.ticks.forEach((t, i) => {
      const x = this.sx(t);
      el("line", { x1: x, x2: x, y1: m.top, y2: m.top + plotH, class: "chart-grid-x" }, grid);
      const label = el("text", { x, y: m.top + plotH + 16, "text-anchor": "middle", class: "chart-tick" }, g);
      label.textContent = xTickText[i];
    });
    el("line", { x1: m.left, x2: m.left + plotW, y1: m.top + plotH, y2: m.top + plotH, class: "chart-axis" }, g);
    el("line", { x1: m.left, x2: m.left, y1: m.top, y2: m.top + plotH, class: "chart-axis" }, g);
    if (this.options.xLabel) {
      const t = el("text", { x: m.left + plotW / 2, y: height - 4, "text-anchor": "middle", class: "chart-axis-label" }, g);
      t.textContent = this.options.xLabel;
    }
    if (this.options.yLabel) {
      const t = el("text", { x: 0, y: 0, transform: `translate(11 ${m.top + plotH / 2}) rotate(-90)`, "text-anchor": "middle", class: "chart-axis-label" }, g);
      t.textContent = this.options.yLabel;
    }
    void width;
  }

  empty(box) {
    const t = el("text", { x: box.m.left + box.plotW / 2, y: box.m.top + box.plotH / 2, "text-anchor": "middle", class: "chart-empty" }, this.svg);
    t.textContent = this.options.empty;
  }

  /** [min, max] of the values with a margin; a margin never takes values that are all >= 0 below zero. */
  domain(values, pad = 0.04, zero = false) {
    let [min, max] = extent(values);
    if (zero) min = Math.min(min, 0);
    const span = max - min || Math.abs(max) || 1;
    const positive = min >= 0;
    if (!zero || min < 0) min -= span * pad;
    if (positive && min < 0) min = 0;
    max += span * pad;
    return [min, max];
  }

  scales(box, [x0, x1], [y0, y1]) {
    const { m, plotW, plotH } = box;
    if (x0 === x1) [x0, x1] = [x0 - 1, x1 + 1];
    if (y0 === y1) [y0, y1] = [y0 - 1, y1 + 1];
    this.sx = (v) => m.left + ((v - x0) / (x1 - x0)) * plotW;
    this.sy = (v) => m.top + plotH - ((v - y0) / (y1 - y0)) * plotH;
    this.ix = (px) => x0 + ((px - m.left) / plotW) * (x1 - x0);
  }

  pointer(e) {
    const rect = this.svg.getBoundingClientRect();
    const scale = this.width / rect.width || 1;
    return { x: (e.clientX - rect.left) * scale, y: (e.clientY - rect.top) * scale, rect };
  }

  showTooltip(htmlText, px, py) {
    this.tooltip.innerHTML = htmlText;
    this.tooltip.hidden = false;
    const cw = this.container.clientWidth;
    const tw = this.tooltip.offsetWidth;
    let left = px + 14;
    if (left + tw > cw) left = Math.max(0, px - tw - 14);
    this.tooltip.style.left = `${left}px`;
    this.tooltip.style.top = `${Math.max(0, py - 10)}px`;
  }

  unhover() {
    this.tooltip.hidden = true;
    this.hoverLayer?.replaceChildren();
  }

  destroy() {
    this.observer.disconnect();
  }
}

/**
 * Lines over a shared x axis.
 *   const chart = new LineChart(div, {xLabel: "step", yLabel: "loss", valueText: (v) => ...});
 *   chart.setSeries([{key: "loss", name: "train loss", points: [[x, y], ...], color?, dashed?}]);
 *   chart.append("loss", x, y);   // live points
 */
export class LineChart extends Frame {
  constructor(container, options = {}) {
    super(container, options);
    this.series = [];
    this.render();
  }

  setSeries(series) {
    this.series = series.map((s, i) => ({
      color: PALETTE[i % PALETTE.length],
      ...s,
      points: (s.points || []).filter((p) => Number.isFinite(p[0]) && Number.isFinite(p[1])).sort((a, b) => a[0] - b[0]),
    }));
    this.render();
  }

  /** Adds a point to the series `key` (created with `name` when absent). */
  append(key, x, y, name = key) {
    if (!Number.isFinite(x) || !Number.isFinite(y)) return;
    let s = this.series.find((item) => item.key === key);
    if (!s) {
      s = { key, name, color: PALETTE[this.series.length % PALETTE.length], points: [] };
      this.series.push(s);
    }
    const last = s.points.at(-1);
    if (!last || last[0] <= x) s.points.push([x, y]);
    else {
      s.points.push([x, y]);
      s.points.sort((a, b) => a[0] - b[0]);
    }
    this.schedule();
  }

  get count() {
    return this.series.reduce((n, s) => n + s.points.length, 0);
  }

  render() {
    const all = this.series.flatMap((s) => s.points);
    const xs = all.map((p) => p[0]);
    const ys = all.map((p) => p[1]);
    const yTicks = all.length ? niceTicks(...this.domain(ys, 0.05), 5) : { ticks: [0, 1], step: 1 };
    const yLabels = yTicks.ticks.map((t) => tickText(t, yTicks.step));
    this.svg.replaceChildren();
    const box = this.layout(yLabels);
    const xDomain = all.length ? extent(xs) : [0, 1];
    const xTicks = niceTicks(xDomain[0], xDomain[1], Math.max(2, Math.floor(box.plotW / 90)));
    this.scales(box, xDomain, [yTicks.ticks[0], yTicks.ticks.at(-1)]);
    // The x axis spans the data (steps); ticks outside it are dropped.
    const xShown = all.length ? xTicks.ticks.filter((t) => t >= xDomain[0] - 1e-9 && t <= xDomain[1] + 1e-9) : xTicks.ticks;
    const g = el("g", {}, this.svg);
    this.axes(g, box, { ticks: xShown }, yTicks, xShown.map((t) => tickText(t, xTicks.step)), yLabels);
    if (!all.length) this.empty(box);
    const lines = el("g", { class: "chart-lines" }, this.svg);
    for (const s of this.series) {
      if (!s.points.length) continue;
      const d = s.points.map((p, i) => `${i ? "L" : "M"}${this.sx(p[0]).toFixed(1)},${this.sy(p[1]).toFixed(1)}`).join("");
      el("path", { d, fill: "none", stroke: s.color, "stroke-width": s.width || 1.8, "stroke-dasharray": s.dashed ? "5 3" : null, "data-series": s.key, class: "chart-line" }, lines);
      if (s.markers || s.points.length <= 12 || (s.points.length <= 40 && this.series.length <= 2)) {
        for (const p of s.points) el("circle", { cx: this.sx(p[0]).toFixed(1), cy: this.sy(p[1]).toFixed(1), r: 2.8, fill: s.color, class: "chart-dot" }, lines);
      }
    }
    this.hoverLayer = el("g", { class: "chart-hover" }, this.svg);
    this.setCount(all.length);
    this.box = box;
    this.legend.innerHTML = this.series.length > 1 || this.options.alwaysLegend
      ? this.series.map((s) => `<span class="legend-item"><i style="background:${esc(s.color)}"${s.dashed ? ' class="dashed"' : ""}></i>${esc(s.name)}</span>`).join("")
      : "";
  }

  hover(e) {
    if (!this.box || !this.count) return;
    const { x: px, y: py } = this.pointer(e);
    const x = this.ix(px);
    const rows = [];
    let nearestX = null;
    for (const s of this.series) {
      if (!s.points.length) continue;
      const p = nearest(s.points, x);
      rows.push([s, p]);
      if (nearestX === null || Math.abs(p[0] - x) < Math.abs(nearestX - x)) nearestX = p[0];
    }
    const shown = rows.filter(([, p]) => p[0] === nearestX || this.series.length > 1);
    this.hoverLayer.replaceChildren();
    const lx = this.sx(nearestX);
    el("line", { x1: lx, x2: lx, y1: this.box.m.top, y2: this.box.m.top + this.box.plotH, class: "chart-crosshair" }, this.hoverLayer);
    for (const [s, p] of shown) el("circle", { cx: this.sx(p[0]), cy: this.sy(p[1]), r: 4.2, fill: s.color, class: "chart-hover-dot" }, this.hoverLayer);
    const xt = this.options.xText;
    const vt = this.options.valueText;
    const body = shown
      .map(([s, p]) => `<div><i style="background:${esc(s.color)}"></i>${esc(s.name)}: <b>${esc(vt(p[1]))}</b>${p[0] !== nearestX ? ` <small>(${esc(this.options.xLabel || "x")} ${esc(xt(p[0]))})</small>` : ""}</div>`)
      .join("");
    const rect = this.svg.getBoundingClientRect();
    const cRect = this.container.getBoundingClientRect();
    this.showTooltip(`<div class="chart-tooltip-head">${esc(this.options.xLabel || "x")} ${esc(xt(nearestX))}</div>${body}`, (lx * rect.width) / this.width + rect.left - cRect.left, (py * rect.height) / this.options.height + rect.top - cRect.top);
  }
}

function nearest(points, x) {
  let lo = 0;
  let hi = points.length - 1;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (points[mid][0] < x) lo = mid;
    else hi = mid;
  }
  return Math.abs(points[lo][0] - x) <= Math.abs(points[hi][0] - x) ? points[lo] : points[hi];
}

/**
 * Labelled points and a front.
 *   const chart = new ScatterChart(div, {xLabel: "g CO2eq", yLabel: "accuracy", onClick: (point) => ...});
 *   chart.setData({points: [{x, y, label, id, color?, front?: bool}], front: [{x, y}, ...]});
 */
export class ScatterChart extends Frame {
  constructor(container, options = {}) {
    super(container, { height: 340, labels: "auto", ...options });
    this.points = [];
    this.fronts = [];
    this.svg.addEventListener("click", (e) => {
      const hit = this.hit(e);
      if (hit && this.options.onClick) this.options.onClick(hit);
    });
    this.render();
  }

  /** `front`: one front's points; `fronts`: several (one per metric, say), each drawn as its own line. */
  setData({ points = [], front = [], fronts = null }) {
    this.points = points.filter((p) => Number.isFinite(p.x) && Number.isFinite(p.y));
    const clean = (line) => [...line].filter((p) => Number.isFinite(p.x) && Number.isFinite(p.y)).sort((a, b) => a.x - b.x);
    this.fronts = (fronts || [front]).map(clean).filter((line) => line.length);
    this.render();
  }

  render() {
    const ys = this.points.map((p) => p.y);
    const xs = this.points.map((p) => p.x);
    const any = this.points.length > 0;
    const yTicks = any ? niceTicks(...this.domain(ys, 0.08), 5) : { ticks: [0, 1], step: 1 };
    const yLabels = yTicks.ticks.map((t) => tickText(t, yTicks.step));
    this.svg.replaceChildren();
    const box = this.layout(yLabels);
    const xDomain = any ? this.domain(xs, 0.08, true) : [0, 1];
    const xTicks = niceTicks(xDomain[0], xDomain[1], Math.max(2, Math.floor(box.plotW / 90)));
    this.scales(box, [xTicks.ticks[0], xTicks.ticks.at(-1)], [yTicks.ticks[0], yTicks.ticks.at(-1)]);
    const g = el("g", {}, this.svg);
    this.axes(g, box, xTicks, yTicks, xTicks.ticks.map((t) => tickText(t, xTicks.step)), yLabels);
    if (!any) this.empty(box);
    for (const line of this.fronts) {
      if (line.length < 2) continue;
      const d = line.map((p, i) => `${i ? "L" : "M"}${this.sx(p.x).toFixed(1)},${this.sy(p.y).toFixed(1)}`).join("");
      el("path", { d, class: "chart-front", fill: "none" }, this.svg);
    }
    const layer = el("g", { class: "chart-points" }, this.svg);
    const labels = el("g", { class: "chart-labels" }, this.svg);
    const labelAll = this.options.labels === "all" || (this.options.labels === "auto" && this.points.length <= 24);
    // Front points last, so they sit on top.
    const ordered = [...this.points].sort((a, b) => Number(Boolean(a.front)) - Number(Boolean(b.front)));
    ordered.forEach((p, i) => {
      const color = p.color || PALETTE[i % PALETTE.length];
      const node = el("circle", { cx: this.sx(p.x).toFixed(1), cy: this.sy(p.y).toFixed(1), r: p.front ? 6 : 4.5, fill: color, class: `chart-point${p.front ? " on-front" : ""}`, "data-id": p.id ?? null }, layer);
      el("title", {}, node).textContent = p.label || "";
    });
    // Labels: the front's first; above, below, then further off; one that fits nowhere is left to the tooltip.
    const placed = this.points.map((p) => ({ x0: this.sx(p.x) - 5, x1: this.sx(p.x) + 5, y: this.sy(p.y) + 4 }));
    for (const p of [...ordered].reverse()) {
      if (!p.label || !(labelAll || p.front)) continue;
      const cx = this.sx(p.x);
      const cy = this.sy(p.y);
      const text = p.label.length > 28 ? `${p.label.slice(0, 27)}…` : p.label;
      const width = text.length * 6.2;
      const anchor = cx > box.m.left + box.plotW * 0.75 ? "end" : "start";
      const x0 = anchor === "end" ? cx - 7 - width : cx + 7;
      const spot = [cy - 8, cy + 15, cy - 20, cy + 27].find((ty) => ty > box.m.top + 4 && ty < box.m.top + box.plotH + 4 && !placed.some((q) => x0 < q.x1 && q.x0 < x0 + width && Math.abs(q.y - ty) < 12));
      if (spot === undefined) continue;
      placed.push({ x0, x1: x0 + width, y: spot });
      const label = el("text", { x: (anchor === "end" ? cx - 7 : cx + 7).toFixed(1), y: spot.toFixed(1), "text-anchor": anchor, class: `chart-point-label${p.front ? " on-front" : ""}` }, labels);
      label.textContent = text;
    }
    this.hoverLayer = el("g", { class: "chart-hover" }, this.svg);
    this.box = box;
    this.setCount(this.points.length, this.points.filter((p) => p.front).length);
    this.legend.innerHTML = this.fronts.length
      ? `<span class="legend-item"><i class="front-swatch"></i>Pareto front (${this.points.filter((p) => p.front).length} of ${this.points.length})</span>`
      : "";
  }

  hit(e) {
    if (!this.box || !this.points.length) return null;
    const { x, y } = this.pointer(e);
    let best = null;
    let bestD = 18 * 18;
    for (const p of this.points) {
      const d = (this.sx(p.x) - x) ** 2 + (this.sy(p.y) - y) ** 2;
      if (d < bestD) {
        bestD = d;
        best = p;
      }
    }
    return best;
  }

  hover(e) {
    const p = this.hit(e);
    if (!p) return this.unhover();
    this.hoverLayer.replaceChildren();
    const cx = this.sx(p.x);
    const cy = this.sy(p.y);
    el("circle", { cx, cy, r: 9, class: "chart-hover-ring" }, this.hoverLayer);
    this.svg.style.cursor = this.options.onClick ? "pointer" : "default";
    const rect = this.svg.getBoundingClientRect();
    const cRect = this.container.getBoundingClientRect();
    const o = this.options;
    this.showTooltip(
      `<div class="chart-tooltip-head">${esc(p.label || "")}</div>
       <div>${esc(o.yLabel || "y")}: <b>${esc(o.valueText(p.y))}</b></div>
       <div>${esc(o.xLabel || "x")}: <b>${esc(o.xText(p.x))}</b></div>
       ${p.note ? `<div><small>${esc(p.note)}</small></div>` : ""}${p.front ? '<div class="on-front">on the Pareto front</div>' : ""}`,
      (cx * rect.width) / this.width + rect.left - cRect.left,
      (cy * rect.height) / this.options.height + rect.top - cRect.top,
    );
  }

  unhover() {
    super.unhover();
    this.svg.style.cursor = "default";
  }
}

/**
 * The points no other point beats: at most the same x (g CO2eq, lower is better) and a y at least as good
 * (higher when greaterIsBetter, else lower), better in one. Returned sorted by x.
 */
export function paretoFront(points, greaterIsBetter = true) {
  const better = (a, b) => (greaterIsBetter ? a > b : a < b);
  const sorted = [...points].sort((a, b) => a.x - b.x || (better(a.y, b.y) ? -1 : better(b.y, a.y) ? 1 : 0));
  const front = [];
  let best = null;
  for (const p of sorted) {
    if (best === null || better(p.y, best)) {
      front.push(p);
      best = p.y;
    }
  }
  return front;
}

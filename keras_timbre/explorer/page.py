"""The explorer's HTML: one file, hand-written vanilla JavaScript and SVG, the data inlined as JSON.

No plotting library: Bokeh or Plotly would add 1-4 MB of inlined script and
a dependency for what 1,100 SVG circles, a tooltip and three `<audio>`
elements do. SVG keeps every note a DOM element, so hover and click are plain
events and a browser test can count and click the points.
"""

from __future__ import annotations

import html
import json
from typing import Any

_STYLE = """
body { font: 14px system-ui, sans-serif; margin: 16px; color: #222; }
h1 { font-size: 18px; margin: 0 0 8px; }
#layout { display: flex; gap: 20px; align-items: flex-start; }
#map { border: 1px solid #ccc; background: #fff; }
circle.note { stroke: #fff; stroke-width: 0.5; cursor: pointer; }
circle.anchor { stroke: #000; stroke-width: 2; }
circle.selected { stroke: #000; stroke-width: 3; }
circle.picked { stroke: #d00; stroke-width: 3; }
#tooltip { position: fixed; pointer-events: none; background: rgba(0,0,0,.8); color: #fff;
  padding: 4px 8px; border-radius: 4px; font-size: 12px; display: none; white-space: pre; }
#panel { max-width: 560px; }
h2 { font-size: 16px; margin: 10px 0 4px; }
.row { margin: 6px 0; }
.media { display: grid; grid-template-columns: 110px 260px 160px; align-items: center; gap: 6px; }
.media audio { width: 250px; }
canvas.thumb { width: 160px; height: 80px; image-rendering: pixelated; border: 1px solid #ccc; }
#legend span.swatch { display: inline-block; width: 10px; height: 10px; margin: 0 4px 0 10px; }
#morph-strip { display: flex; gap: 4px; flex-wrap: wrap; }
#morph-strip figure { margin: 0; text-align: center; font-size: 11px; }
#morph-strip canvas.thumb { width: 96px; height: 48px; cursor: pointer; }
.hint { color: #666; font-size: 12px; }
"""

_BODY = """
<h1 id="title"></h1>
<div class="row">
  Map <select id="map-choice"><option value="tsne">t-SNE</option><option value="pca">PCA</option></select>
  Colour by <select id="colour-choice"><option value="family">family</option>
    <option value="source">source</option></select>
  <span id="legend"></span>
</div>
<div id="layout">
  <svg id="map" width="620" height="620" viewBox="0 0 620 620"></svg>
  <div id="panel">
    <div class="hint">Hover a note to name it; click to hear it, then its reconstruction.
      Shift-click two ringed notes (or choose a pair below) to see and hear the morph between their codes.</div>
    <h2 id="note-name">No note selected</h2>
    <div id="note-labels" class="row"></div>
    <div class="media"><span>Original</span><audio id="audio-original" controls preload="none"></audio>
      <canvas id="thumb-original" class="thumb"></canvas>
      <span>Reconstruction</span><audio id="audio-reconstruction" controls preload="none"></audio>
      <canvas id="thumb-reconstruction" class="thumb"></canvas></div>
    <h2>Morph</h2>
    <div class="row"><select id="morph-choice"><option value="">choose a pair</option></select>
      <button id="morph-play">Play morph</button></div>
    <div id="morph-status" class="hint"></div>
    <div id="morph-strip"></div>
    <audio id="audio-morph" controls preload="none"></audio>
    <div id="status" class="hint"></div>
  </div>
</div>
<div id="tooltip"></div>
"""

_SCRIPT = r"""
"use strict";
const data = JSON.parse(document.getElementById("explorer-data").textContent);
const SVG_NS = "http://www.w3.org/2000/svg";
const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
                 "#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#ad494a"];
const SIZE = 620, MARGIN = 20;
const $ = (id) => document.getElementById(id);
const state = { map: "tsne", colour: "family", selected: -1, picked: [], morphQueue: [] };
const anchors = new Set(data.anchors);
const svg = $("map"), tooltip = $("tooltip");
const audio = { original: $("audio-original"), reconstruction: $("audio-reconstruction"), morph: $("audio-morph") };

const circles = data.notes.map((note, i) => {
  const circle = document.createElementNS(SVG_NS, "circle");
  circle.setAttribute("r", anchors.has(i) ? 6 : 4);
  circle.setAttribute("class", anchors.has(i) ? "note anchor" : "note");
  circle.dataset.index = String(i);
  svg.appendChild(circle);
  return circle;
});
// Morph notes on top, so a click on a ring always reaches its note.
data.anchors.forEach((i) => svg.appendChild(circles[i]));

function placePoints() {
  const points = data.maps[state.map];
  const scale = SIZE - 2 * MARGIN;
  circles.forEach((circle, i) => {
    circle.setAttribute("cx", (MARGIN + points[i][0] * scale).toFixed(1));
    circle.setAttribute("cy", (MARGIN + (1 - points[i][1]) * scale).toFixed(1));
  });
}

function colourPoints() {
  const key = state.colour;
  const counts = new Map();
  data.notes.forEach((note) => counts.set(note[key], (counts.get(note[key]) || 0) + 1));
  const values = [...counts.keys()].sort();
  const colours = new Map(values.map((value, i) => [value, PALETTE[i % PALETTE.length]]));
  circles.forEach((circle, i) => circle.setAttribute("fill", colours.get(data.notes[i][key])));
  $("legend").innerHTML = "";
  values.forEach((value) => {
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = colours.get(value);
    $("legend").append(swatch, document.createTextNode(`${value} (${counts.get(value)})`));
  });
}

function describe(i) {
  const n = data.notes[i];
  return `${n.name}\nfamily ${n.family}, source ${n.source}\npitch ${n.pitch}, velocity ${n.velocity}`;
}

function audioUrl(base64) { return `data:${data.audioType};base64,${base64}`; }

function play(element, base64) {
  element.src = audioUrl(base64);
  element.play().catch((error) => { $("status").textContent = `Press play to listen (${error.name}).`; });
}

// A spectrogram thumbnail: uint8 rows (low mels first) drawn with a dark-to-yellow ramp.
function drawThumb(canvas, base64) {
  const [rows, cols] = data.thumbShape;
  const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
  canvas.width = cols; canvas.height = rows;
  const context = canvas.getContext("2d");
  const image = context.createImageData(cols, rows);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const v = bytes[r * cols + c] / 255, p = 4 * ((rows - 1 - r) * cols + c);
      image.data[p] = 255 * Math.min(1, 1.6 * v);
      image.data[p + 1] = 255 * Math.max(0, 1.6 * v - 0.6);
      image.data[p + 2] = 255 * Math.max(0, 0.5 - Math.abs(v - 0.35)) * 1.6;
      image.data[p + 3] = 255;
    }
  }
  context.putImageData(image, 0, 0);
}

function selectNote(i) {
  if (state.selected >= 0) circles[state.selected].classList.remove("selected");
  state.selected = i;
  circles[i].classList.add("selected");
  const note = data.notes[i];
  $("note-name").textContent = note.name;
  $("note-labels").textContent =
    `family ${note.family} · source ${note.source} · pitch ${note.pitch} · velocity ${note.velocity}`;
  drawThumb($("thumb-original"), data.thumb[i]);
  drawThumb($("thumb-reconstruction"), data.recon_thumb[i]);
  audio.reconstruction.src = audioUrl(data.recon_audio[i]);
  audio.original.onended = () => audio.reconstruction.play().catch(() => {});
  play(audio.original, data.audio[i]);
}

function findMorph(a, b) {
  for (const morph of data.morphs) {
    if (morph.a === a && morph.b === b) return { morph, order: morph.clips.map((_, k) => k) };
    if (morph.a === b && morph.b === a) return { morph, order: morph.clips.map((_, k) => morph.clips.length - 1 - k) };
  }
  return null;
}

function pickNote(i) {
  state.picked.forEach((j) => circles[j].classList.remove("picked"));
  state.picked = state.picked.length >= 2 ? [i] : [...state.picked, i];
  state.picked.forEach((j) => circles[j].classList.add("picked"));
  if (state.picked.length === 2) showMorph(state.picked[0], state.picked[1]);
  else $("morph-status").textContent = `Picked ${data.notes[i].name}; shift-click a second ringed note.`;
}

function showMorph(a, b) {
  const strip = $("morph-strip");
  strip.innerHTML = "";
  state.morphQueue = [];
  const found = findMorph(a, b);
  if (!found) {
    $("morph-status").textContent = `No morph precomputed between ${data.notes[a].name} and ${data.notes[b].name}: ` +
      `morphs exist between the ${data.anchors.length} ringed notes.`;
    return;
  }
  $("morph-status").textContent =
    `${data.notes[a].name} → ${data.notes[b].name} (${found.order.length} decoded points)`;
  found.order.forEach((k, step) => {
    const figure = document.createElement("figure");
    const canvas = document.createElement("canvas");
    canvas.className = "thumb";
    drawThumb(canvas, found.morph.thumbs[k]);
    canvas.addEventListener("click", () => play(audio.morph, found.morph.clips[k]));
    const caption = document.createElement("figcaption");
    caption.textContent = `α = ${(step / (found.order.length - 1)).toFixed(2)}`;
    figure.append(canvas, caption);
    strip.append(figure);
    state.morphQueue.push(found.morph.clips[k]);
  });
}

function playMorph() {
  const queue = [...state.morphQueue];
  if (!queue.length) { $("morph-status").textContent = "Pick two ringed notes first."; return; }
  audio.morph.onended = () => { if (queue.length) play(audio.morph, queue.shift()); };
  play(audio.morph, queue.shift());
}

svg.addEventListener("mousemove", (event) => {
  const index = event.target.dataset ? event.target.dataset.index : undefined;
  if (index === undefined) { tooltip.style.display = "none"; return; }
  tooltip.textContent = describe(Number(index));
  tooltip.style.left = `${event.clientX + 12}px`;
  tooltip.style.top = `${event.clientY + 12}px`;
  tooltip.style.display = "block";
});
svg.addEventListener("mouseleave", () => { tooltip.style.display = "none"; });
svg.addEventListener("click", (event) => {
  const index = event.target.dataset ? event.target.dataset.index : undefined;
  if (index === undefined) return;
  if (event.shiftKey) pickNote(Number(index)); else selectNote(Number(index));
});
$("map-choice").addEventListener("change", (event) => { state.map = event.target.value; placePoints(); });
$("colour-choice").addEventListener("change", (event) => { state.colour = event.target.value; colourPoints(); });
$("morph-play").addEventListener("click", playMorph);
data.morphs.forEach((morph, k) => {
  const option = document.createElement("option");
  option.value = String(k);
  option.textContent = `${data.notes[morph.a].name} ↔ ${data.notes[morph.b].name}`;
  $("morph-choice").append(option);
});
$("morph-choice").addEventListener("change", (event) => {
  if (event.target.value === "") return;
  const morph = data.morphs[Number(event.target.value)];
  state.picked = [];
  pickNote(morph.a);
  pickNote(morph.b);
});

$("title").textContent = data.title;
document.title = data.title;
placePoints();
colourPoints();
// For scripted checks (tests) and the console: the page's state and actions.
window.explorer = { data, circles, audio, selectNote, pickNote, showMorph, playMorph };
"""


def render_page(payload: dict[str, Any]) -> str:
    """The whole HTML document for `payload` (see `explore._payload`), script and data inlined.

    Example:
    >>> page = render_page({"title": "a <b>", "notes": []})
    >>> page.startswith("<!DOCTYPE html>"), "a &lt;b&gt;" in page, "<b>" in page
    (True, True, False)
    """
    # "<" escaped everywhere: no "</script>" or "<!--" inside the data block can end it early.
    data = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).replace("<", "\\u003c")
    title = html.escape(str(payload.get("title", "keras-timbre explorer")))
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{title}</title>\n<style>{_STYLE}</style>\n</head>\n<body>{_BODY}"
        f'<script type="application/json" id="explorer-data">{data}</script>\n'
        f"<script>{_SCRIPT}</script>\n</body>\n</html>\n"
    )

"""The explorable page's style sheet and script (plain text, inlined by :mod:`steering.explorer.page`).

The script reads the data island ``<script type="application/json" id="explorable-data">``, checks
it (an object whose ``records`` cover every layer × coefficient × prompt × sample × decoding, each
with ``layer``, ``coeff``, ``prompt``, ``sample``, ``completion``), and shows the record of the
setting the sliders choose. A page whose data is broken shows the reason in
``#explorable-error`` (and ``body[data-state="error"]``) instead of a blank page.

For browsers driven by tests:

* ``window.explorableSet(layerIndex, coeffIndex[, decodingIndex])`` moves the sliders (firing their
  ``input`` events) and returns the shown setting;
* a URL hash ``#layer=6&coeff=8[&decoding=greedy]`` (values, not indices) is applied at load the
  same way, and the hash follows the sliders afterwards;
* ``body`` carries ``data-state`` (``ready`` / ``error``), ``data-layer``, ``data-coeff`` and
  ``data-decoding`` of the shown setting; every shown completion carries ``data-layer``,
  ``data-coeff``, ``data-prompt-index``, ``data-sample`` and ``data-decoding``.

Example:
    >>> "explorableSet" in SCRIPT and "#explorable-error" in CSS
    True
"""

__all__ = ["CSS", "SCRIPT"]

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1150px; margin: 1.5em auto;
       padding: 0 1em; color: #222; line-height: 1.4; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; }
.caption { color: #666; font-size: 0.9em; }
#explorable-error { background: #fde8e8; color: #8a1c1c; padding: 0.8em; white-space: pre-wrap; font-weight: 600; }
#explorable-note { color: #8a5a00; font-size: 0.9em; }
#explorable-note:empty { display: none; }
.controls { display: flex; flex-wrap: wrap; gap: 1.5em; align-items: center; margin: 1em 0; padding: 0.8em;
            background: #f4f5f7; border-radius: 6px; }
.controls label { display: flex; align-items: center; gap: 0.5em; font-weight: 600; }
.controls input[type=range] { width: 16em; }
.controls output { min-width: 3.5em; font-variant-numeric: tabular-nums; font-weight: 400; }
.metrics { display: flex; flex-wrap: wrap; gap: 0.8em; margin: 0.5em 0; }
.metric { border: 1px solid #ddd; border-radius: 6px; padding: 0.4em 0.8em; }
.metric b { display: block; font-size: 1.2em; font-variant-numeric: tabular-nums; }
.metric span { color: #666; font-size: 0.8em; }
#explorable-plot { height: 340px; }
table.side { border-collapse: collapse; width: 100%; margin: 0.4em 0 1.2em; table-layout: fixed; }
table.side th, table.side td { border: 1px solid #ddd; padding: 0.3em 0.6em; vertical-align: top; text-align: left; }
table.side th { background: #f4f5f7; }
.completion { white-space: pre-wrap; font-family: ui-monospace, "SFMono-Regular", Menlo, monospace; font-size: 0.85em; }
.prompt { font-weight: 600; margin-top: 0.8em; }
.lenses { display: flex; flex-wrap: wrap; gap: 2em; }
.lenses table { border-collapse: collapse; font-size: 0.85em; }
.lenses td, .lenses th { border: 1px solid #ddd; padding: 0.15em 0.5em; }
.lenses td.num { text-align: right; font-variant-numeric: tabular-nums; }
.up { color: #11663a; } .down { color: #9b1c1c; }
"""

SCRIPT = r"""
(function () {
  "use strict";
  var REQUIRED = ["layer", "coeff", "prompt", "sample", "completion"];
  var body = document.body;
  function $(id) { return document.getElementById(id); }
  function fail(message) {
    var box = $("explorable-error");
    box.textContent = "This explorable cannot be shown: " + message;
    box.hidden = false;
    $("explorable").hidden = true;
    body.dataset.state = "error";
  }
  window.onerror = function (message) { fail("script error: " + message); };
  function isNumberList(x) { return Array.isArray(x) && x.length > 0 && x.every(function (v) { return typeof v === "number"; }); }
  function key(layer, coeff, decoding) { return layer + "|" + coeff + "|" + decoding; }

  function check(data) {
    if (data === null || typeof data !== "object" || Array.isArray(data)) { throw new Error("the data island does not hold an object"); }
    if (!Array.isArray(data.records) || data.records.length === 0) { throw new Error("the data has no records list (or it is empty)"); }
    if (!isNumberList(data.layers)) { throw new Error("'layers' is not a non-empty list of numbers"); }
    if (!isNumberList(data.coeffs)) { throw new Error("'coeffs' is not a non-empty list of numbers"); }
    if (!Array.isArray(data.prompts) || data.prompts.length === 0) { throw new Error("'prompts' is not a non-empty list"); }
    var decodings = Array.isArray(data.decodings) && data.decodings.length ? data.decodings : ["sampled"];
    var samples = data.samples || {};
    var index = {};
    data.records.forEach(function (r, i) {
      if (r === null || typeof r !== "object") { throw new Error("record " + i + " is not an object"); }
      REQUIRED.forEach(function (field) {
        if (!(field in r)) { throw new Error("record " + i + " has no '" + field + "'"); }
      });
      if (typeof r.completion !== "string" || typeof r.prompt !== "string") { throw new Error("record " + i + ": completion and prompt must be text"); }
      var pi = typeof r.prompt_index === "number" ? r.prompt_index : data.prompts.indexOf(r.prompt);
      var k = key(r.layer, r.coeff, r.decoding || decodings[0]);
      (index[k] = index[k] || {})[pi + "/" + r.sample] = r;
    });
    data.layers.forEach(function (layer) {
      data.coeffs.forEach(function (coeff) {
        decodings.forEach(function (d) {
          var got = index[key(layer, coeff, d)] || {};
          var n = typeof samples === "number" ? samples : (samples[d] || 1);
          for (var p = 0; p < data.prompts.length; p++) {
            for (var s = 0; s < n; s++) {
              if (!got[p + "/" + s]) {
                throw new Error("no record for layer " + layer + ", coeff " + coeff + ", prompt " + p + ", sample " + s + " (" + d + "): the grid is incomplete");
              }
            }
          }
        });
      });
    });
    return {index: index, decodings: decodings};
  }

  function cellOf(data, layer, coeff) {
    var cells = data.cells || [];
    for (var i = 0; i < cells.length; i++) { if (cells[i].layer === layer && cells[i].coeff === coeff) { return cells[i]; } }
    return null;
  }
  function fmt(x, digits) { return (x === null || x === undefined) ? "–" : Number(x).toFixed(digits); }
  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (a) { e.setAttribute(a, attrs[a]); });
    if (text !== undefined) { e.textContent = text; }
    return e;
  }
  function tokenTable(title, rows, cls) {
    var t = el("table"), head = el("tr");
    head.appendChild(el("th", {colspan: "2"}, title));
    t.appendChild(head);
    (rows || []).forEach(function (row) {
      var tr = el("tr");
      tr.appendChild(el("td", {"class": cls}, JSON.stringify(row[0])));
      tr.appendChild(el("td", {"class": "num"}, fmt(row[1], 3)));
      t.appendChild(tr);
    });
    return t;
  }

  var data, built;
  try {
    var island = $("explorable-data");
    if (!island) { throw new Error("the page has no data island (script#explorable-data)"); }
    data = JSON.parse(island.textContent);
    built = check(data);
  } catch (err) {
    fail(err.message || String(err));
    return;
  }
  var layerSlider = $("layer-slider"), coeffSlider = $("coeff-slider"), decodingSelect = $("decoding-select");
  layerSlider.max = String(data.layers.length - 1);
  coeffSlider.max = String(data.coeffs.length - 1);
  built.decodings.forEach(function (d) { decodingSelect.appendChild(el("option", {value: d}, d)); });
  $("decoding-control").hidden = built.decodings.length < 2;

  var plotReady = false;
  function drawPlot() {
    if (typeof Plotly === "undefined") { $("explorable-note").textContent = "plotly.js did not load: the plot is left out."; return; }
    var xs = data.coeffs.map(cLabel), ys = data.layers.map(lLabel);
    function z(field) {
      return data.layers.map(function (l) { return data.coeffs.map(function (c) { var cell = cellOf(data, l, c); return cell ? cell[field] : null; }); });
    }
    var marker = {type: "scatter", mode: "markers", x: [xs[0]], y: [ys[0]], hoverinfo: "skip", showlegend: false,
                  marker: {symbol: "square-open", size: 18, color: "#000", line: {width: 3}}};
    var traces = [
      {type: "heatmap", x: xs, y: ys, z: z("effect"), colorscale: "RdBu", zmid: 0, colorbar: {x: 0.44, len: 0.9, title: {text: "effect"}},
       hovertemplate: "%{y}, %{x}<br>effect %{z:.3f}<extra></extra>"},
      {type: "heatmap", x: xs, y: ys, z: z("kl"), colorscale: "Viridis", xaxis: "x2", yaxis: "y2", colorbar: {x: 1.0, len: 0.9, title: {text: "KL"}},
       hovertemplate: "%{y}, %{x}<br>KL %{z:.4f} nats<extra></extra>"},
      marker, Object.assign({}, marker, {xaxis: "x2", yaxis: "y2"})
    ];
    var layout = {margin: {t: 30, l: 50, r: 10, b: 40}, height: 340,
      xaxis: {domain: [0, 0.4], type: "category", title: {text: "coefficient"}},
      yaxis: {type: "category", title: {text: "layer"}},
      xaxis2: {domain: [0.56, 0.96], type: "category", title: {text: "coefficient"}},
      yaxis2: {type: "category", anchor: "x2"},
      annotations: [{text: "effect: Δ log-prob of the target", x: 0.2, xref: "paper", y: 1.08, yref: "paper", showarrow: false},
                    {text: "off-target KL (nats)", x: 0.76, xref: "paper", y: 1.08, yref: "paper", showarrow: false}]};
    Promise.resolve(Plotly.newPlot("explorable-plot", traces, layout, {displaylogo: false, responsive: true})).then(
      function () { plotReady = true; body.dataset.plot = "ready"; markPlot(); },
      function (err) { $("explorable-note").textContent = "the plot failed: " + err; });
  }
  function cLabel(c) { return "c=" + c; }  // text labels: the axes stay categorical, one cell per setting
  function lLabel(l) { return "L" + l; }
  function markPlot() {
    if (!plotReady) { return; }
    var x = cLabel(data.coeffs[+coeffSlider.value]), y = lLabel(data.layers[+layerSlider.value]);
    Plotly.restyle("explorable-plot", {x: [[x], [x]], y: [[y], [y]]}, [2, 3]);
  }

  function records(layer, coeff, decoding) { return built.index[key(layer, coeff, decoding)] || {}; }
  function render() {
    var li = +layerSlider.value, ci = +coeffSlider.value, decoding = decodingSelect.value || built.decodings[0];
    var layer = data.layers[li], coeff = data.coeffs[ci];
    $("layer-value").textContent = String(layer);
    $("coeff-value").textContent = String(coeff);
    var steered = records(layer, coeff, decoding), plain = records(layer, 0, decoding);
    var cell = cellOf(data, layer, coeff) || {};
    var box = $("completions");
    box.textContent = "";
    var n = typeof data.samples === "number" ? data.samples : ((data.samples || {})[decoding] || 1);
    data.prompts.forEach(function (prompt, p) {
      box.appendChild(el("div", {"class": "prompt"}, "Prompt: " + JSON.stringify(prompt)));
      var t = el("table", {"class": "side"}), head = el("tr");
      head.appendChild(el("th", {}, "unsteered (c = 0)"));
      head.appendChild(el("th", {}, "steered: layer " + layer + ", c = " + coeff));
      t.appendChild(head);
      for (var s = 0; s < n; s++) {
        var tr = el("tr"), r = steered[p + "/" + s], u = plain[p + "/" + s];
        tr.appendChild(el("td", {"class": "completion unsteered"}, u ? u.completion : "(not computed)"));
        tr.appendChild(el("td", {"class": "completion steered", "data-layer": String(layer), "data-coeff": String(coeff),
                                 "data-prompt-index": String(p), "data-sample": String(s), "data-decoding": decoding}, r.completion));
        t.appendChild(tr);
      }
      box.appendChild(t);
    });
    var metrics = $("metrics");
    metrics.textContent = "";
    [["effect", fmt(cell.effect, 3), "Δ log-prob of the target (nats)"], ["KL", fmt(cell.kl, 4), "off-target KL (nats)"],
     ["topic", cell.topic === null || cell.topic === undefined ? "–" : Math.round(100 * cell.topic) + "%", "completions on topic"]]
      .forEach(function (m) { var d = el("div", {"class": "metric"}); d.appendChild(el("b", {}, m[1])); d.appendChild(el("span", {}, m[0] + ": " + m[2])); metrics.appendChild(d); });
    var lenses = $("lenses");
    lenses.textContent = "";
    lenses.appendChild(tokenTable("effect lens: promoted", cell.promoted, "up"));
    lenses.appendChild(tokenTable("effect lens: suppressed", cell.suppressed, "down"));
    var lens = (data.lens || []).filter(function (x) { return x.layer === layer; })[0];
    if (lens) {
      var flip = coeff < 0;  // a negative coefficient turns the vector around
      lenses.appendChild(tokenTable("logit lens of the vector: " + (flip ? "suppressed" : "promoted"), lens.promoted, flip ? "down" : "up"));
      lenses.appendChild(tokenTable("logit lens of the vector: " + (flip ? "promoted" : "suppressed"), lens.suppressed, flip ? "up" : "down"));
    }
    body.dataset.layer = String(layer);
    body.dataset.coeff = String(coeff);
    body.dataset.decoding = decoding;
    var hash = "#layer=" + layer + "&coeff=" + coeff + (built.decodings.length > 1 ? "&decoding=" + decoding : "");
    if (window.location.hash !== hash && history.replaceState) { history.replaceState(null, "", hash); }
    markPlot();
  }
  function move(slider, value) { slider.value = String(value); slider.dispatchEvent(new Event("input", {bubbles: true})); }
  layerSlider.addEventListener("input", render);
  coeffSlider.addEventListener("input", render);
  decodingSelect.addEventListener("change", render);
  window.explorableSet = function (layerIndex, coeffIndex, decodingIndex) {
    if (decodingIndex !== undefined) { decodingSelect.selectedIndex = decodingIndex; decodingSelect.dispatchEvent(new Event("change")); }
    move(layerSlider, layerIndex);
    move(coeffSlider, coeffIndex);
    return {layer: body.dataset.layer, coeff: body.dataset.coeff, decoding: body.dataset.decoding};
  };

  // The starting setting: the URL hash if it names one, else the data's own choice (or the first).
  var start = data.start || {};
  var li = Math.max(0, data.layers.indexOf(start.layer)), ci = Math.max(0, data.coeffs.indexOf(start.coeff));
  var di = 0;
  var wanted = {};
  window.location.hash.replace(/^#/, "").split("&").forEach(function (part) {
    var kv = part.split("=");
    if (kv.length === 2) { wanted[decodeURIComponent(kv[0])] = decodeURIComponent(kv[1]); }
  });
  if ("layer" in wanted) {
    var l = data.layers.indexOf(Number(wanted.layer));
    if (l >= 0) { li = l; } else { $("explorable-note").textContent = "layer " + wanted.layer + " is not in this page; showing layer " + data.layers[li] + "."; }
  }
  if ("coeff" in wanted) {
    var c = data.coeffs.indexOf(Number(wanted.coeff));
    if (c >= 0) { ci = c; } else { $("explorable-note").textContent = "coefficient " + wanted.coeff + " is not in this page; showing " + data.coeffs[ci] + "."; }
  }
  if ("decoding" in wanted && built.decodings.indexOf(wanted.decoding) >= 0) { di = built.decodings.indexOf(wanted.decoding); }
  $("explorable").hidden = false;
  decodingSelect.selectedIndex = di;
  layerSlider.value = String(li);
  coeffSlider.value = String(ci);
  try {
    render();
    drawPlot();
  } catch (err) {
    fail(err.message || String(err));
    return;
  }
  body.dataset.state = "ready";
})();
"""

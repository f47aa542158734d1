// The dashboard: polls /api/stats every 10 s and redraws the chart of
// messages per hour by verdict, the totals beside it, the bar lists and
// the queue tiles, without reloading the page.
"use strict";
(function () {
  var period = "24h";
  var colors = {
    accepted: "#2b7bb9", delivered: "#2e9d5b", deferred: "#d9a21b", bounced: "#b5562d",
    rejected: "#c0392b", tempfailed: "#e67e22", quarantined: "#8e44ad", discarded: "#7f8c8d",
    released: "#16a085", deleted: "#555555", removed: "#999999"
  };
  var plot = null;
  var shown = "";

  function fmtAge(s) {
    if (!s) { return "–"; }
    var m = Math.floor(s / 60);
    if (m <= 90) { return m + "m"; }
    var h = Math.round(m / 60);
    if (h <= 72) { return h + "h"; }
    return Math.round(h / 24) + "d";
  }

  function text(id, t) {
    var el = document.getElementById(id);
    if (el) { el.textContent = t; }
  }

  function drawSeries(st, verdicts) {
    var box = document.getElementById("chart-series");
    if (!box || !window.uPlot) { return; }
    var xs = st.Series.map(function (b) { return Date.parse(b.Start) / 1000; });
    // Only the verdicts that occur get a line, so the chart stays legible.
    var used = verdicts.filter(function (v) { return (st.Totals[v] || 0) > 0; });
    var data = [xs].concat(used.map(function (v) {
      return st.Series.map(function (b) { return (b.Counts && b.Counts[v]) || 0; });
    }));
    var key = used.join(",");
    if (plot && key === shown) {
      plot.setData(data);
      return;
    }
    if (plot) { plot.destroy(); }
    shown = key;
    var opts = {
      width: Math.max(box.clientWidth, 300), height: 260,
      series: [{}].concat(used.map(function (v) {
        return { label: v, stroke: colors[v] || "#333", width: 2, points: { show: false } };
      })),
      axes: [{}, { label: "messages" }],
      scales: { x: { time: true } }
    };
    plot = new window.uPlot(opts, data, box);
  }

  function drawTotals(st, verdicts) {
    verdicts.forEach(function (v) {
      var td = document.querySelector('#totals td[data-verdict="' + v + '"]');
      if (td) { td.textContent = String(st.Totals[v] || 0); }
    });
  }

  function drawBars(st) {
    document.querySelectorAll("table.bars").forEach(function (table) {
      var rows = st[table.getAttribute("data-stat")] || [];
      var max = rows.reduce(function (m, r) { return Math.max(m, r.N); }, 0);
      var body = document.createElement("tbody");
      rows.forEach(function (r) {
        var tr = document.createElement("tr");
        var k = document.createElement("th");
        k.textContent = r.Key || "(none)";
        k.title = r.Key;
        var bar = document.createElement("td");
        bar.className = "bar";
        var fill = document.createElement("span");
        fill.style.width = (max ? (100 * r.N / max) : 0) + "%";
        bar.appendChild(fill);
        var n = document.createElement("td");
        n.className = "n";
        n.textContent = String(r.N);
        tr.append(k, bar, n);
        body.appendChild(tr);
      });
      if (!rows.length) {
        var tr = document.createElement("tr");
        var td = document.createElement("td");
        td.className = "empty";
        td.textContent = "nothing yet";
        tr.appendChild(td);
        body.appendChild(tr);
      }
      table.replaceChildren(body);
    });
  }

  function update() {
    fetch("/api/stats?since=" + period, { credentials: "same-origin", cache: "no-store" })
      .then(function (r) {
        if (r.status === 401) { window.location = "/login?next=/"; }
        if (!r.ok) { throw new Error("HTTP " + r.status); }
        return r.json();
      })
      .then(function (rep) {
        text("queue-size", String(rep.queue));
        text("queue-oldest", rep.queue ? fmtAge(rep.oldest_seconds) : "–");
        text("updated", new Date().toLocaleTimeString());
        if (rep.stats) {
          drawTotals(rep.stats, rep.verdicts);
          drawSeries(rep.stats, rep.verdicts);
          drawBars(rep.stats);
        }
      })
      .catch(function (e) { text("updated", "update failed: " + e.message); });
  }

  update();
  window.setInterval(update, 10000);
})();

// Draws the timeline figure the server built (JSON in #timeline-figure) with plotly.js.
"use strict";
(function () {
  const data = document.getElementById("timeline-figure");
  const target = document.getElementById("timeline");
  if (!data || !target || typeof Plotly === "undefined") {
    document.body.dataset.ready = "true";
    return;
  }
  const fig = JSON.parse(data.textContent);
  Plotly.newPlot(target, fig.data, fig.layout, { displayModeBar: false, responsive: true })
    .then(function () { document.body.dataset.ready = "true"; });
})();

// health.js draws the node page's health plots with uPlot from the
// node's health.json (see internal/console/health.go). No inline script:
// the page names the data's URL in data-src; when done, the container's
// data-charts says how many charts were drawn and data-samples over how
// many samples (the browser tests wait on them).
(function () {
	"use strict";
	var box = document.getElementById("health");
	if (!box || typeof uPlot === "undefined") {
		return;
	}
	var colors = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#be185d", "#4d7c0f"];

	function draw(d) {
		box.textContent = "";
		box.dataset.samples = String(d.times.length);
		if (!d.charts.length || !d.times.length) {
			var p = document.createElement("p");
			p.textContent = "No health samples in this window yet: a node reports them every --health-interval (5 minutes by default).";
			box.appendChild(p);
			box.dataset.charts = "0";
			return;
		}
		var width = Math.max(320, Math.min(box.clientWidth, 900));
		d.charts.forEach(function (c) {
			var fig = document.createElement("figure");
			fig.id = "chart-" + c.id;
			fig.className = "chart";
			var cap = document.createElement("figcaption");
			cap.textContent = c.title + (c.unit ? " (" + c.unit + ")" : "");
			fig.appendChild(cap);
			box.appendChild(fig);
			var series = [{}];
			var data = [d.times];
			c.series.forEach(function (s, i) {
				var o = {label: s.label, stroke: colors[i % colors.length], width: 1.5, spanGaps: false};
				if (c.steps) {
					o.paths = uPlot.paths.stepped({align: 1});
				}
				series.push(o);
				data.push(s.values);
			});
			var x = {time: true};
			if (d.times.length === 1) { // one sample: a ten-minute window around it, not years
				x.range = [d.times[0] - 300, d.times[0] + 300];
			}
			var opts = {width: width, height: 180, series: series, scales: {x: x},
				axes: [{}, {size: 60}]};
			if (c.steps) {
				opts.scales.y = {range: [-0.1, 1.1]};
			}
			new uPlot(opts, data, fig);
		});
		box.dataset.charts = String(d.charts.length);
	}

	fetch(box.dataset.src, {credentials: "same-origin", headers: {"Accept": "application/json"}})
		.then(function (r) {
			if (!r.ok) {
				throw new Error("the server answered " + r.status);
			}
			return r.json();
		})
		.then(draw)
		.catch(function (e) {
			box.textContent = "Could not load the health samples: " + e.message;
			box.dataset.charts = "error";
		});
})();

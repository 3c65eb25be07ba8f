/* The panel's charts (the dashboard /admin/, a kit's funnel on /admin/kits/<id>), drawn with
 * Apache ECharts (static/vendor, installed by `make install`). The numbers and every label,
 * already translated, come from the JSON in the #charts element's data-charts attribute: the
 * page holds no inline script (CSP 'self').
 */
(function () {
  "use strict";

  var holder = document.getElementById("charts");
  if (!holder || typeof window.echarts === "undefined") {
    return;
  }
  var charts = JSON.parse(holder.dataset.charts);
  var empty = holder.dataset.msgEmpty;
  var font = '"Noto Sans CJK SC", "PingFang SC", "Microsoft YaHei", sans-serif';
  // Bar charts for counts, lines for series over time; funnels side by side as grouped bars.
  var kinds = {
    tiers_over_time: "line", tiers: "bar", activity: "line", points: "bar", platforms: "line", funnels: "bar", at_risk: "bar",
    runs: "bar", webhooks: "bar"
  };
  var colours = { webhooks: ["#2e7d32", "#f9a825", "#c62828"] };
  // Series named after what they are (platforms, kits): the legend shows even for one.
  var named = { platforms: true, funnels: true };
  var drawn = [];

  function hasData(chart) {
    return chart.series.some(function (s) {
      return s.data.some(function (v) { return v !== null && v > 0; });
    });
  }

  function option(name, chart) {
    var kind = kinds[name] || "bar";
    var legend = chart.series.length > 1 || (named[name] && chart.series.length > 0);
    var series = chart.series.map(function (s) {
      var one = { name: s.name, type: kind, data: s.data, smooth: false };
      if (colours[name]) {
        one.data = s.data.map(function (v, i) {
          return { value: v, itemStyle: { color: colours[name][i] } };
        });
      }
      return one;
    });
    return {
      textStyle: { fontFamily: font },
      animation: false,
      tooltip: { trigger: "axis" },
      legend: { show: legend, top: 0, type: "scroll" },
      grid: { left: 48, right: 16, top: legend ? 36 : 16, bottom: 32 },
      xAxis: { type: "category", data: chart.labels, axisLabel: { hideOverlap: true } },
      yAxis: { type: "value", minInterval: 1 },
      title: hasData(chart) ? undefined : {
        text: empty, left: "center", top: "middle",
        textStyle: { color: "#888", fontSize: 14, fontWeight: "normal", fontFamily: font }
      },
      series: series
    };
  }

  Array.prototype.forEach.call(holder.querySelectorAll("[data-chart]"), function (el) {
    var name = el.dataset.chart;
    var chart = window.echarts.init(el, null, { renderer: "canvas" });
    chart.setOption(option(name, charts[name]));
    drawn.push(chart);
  });
  window.addEventListener("resize", function () {
    drawn.forEach(function (chart) { chart.resize(); });
  });
}());

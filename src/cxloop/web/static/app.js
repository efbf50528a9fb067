// cxloop web app: draws the charts (ECharts options come in data-option attributes, so the
// page needs no inline script) and opens the menu on narrow screens.
(function () {
  "use strict";

  function draw(root) {
    if (!window.echarts) return;
    root.querySelectorAll(".chart[data-option]").forEach(function (el) {
      if (el.dataset.drawn) return;
      var option;
      try { option = JSON.parse(el.dataset.option); } catch (e) { return; }
      var chart = window.echarts.init(el, null, { renderer: "canvas" });
      if (option.tooltip === undefined) option.tooltip = { trigger: "item" };
      option.aria = { enabled: true };
      chart.setOption(option);
      el.dataset.drawn = "1";
    });
  }

  function resizeAll() {
    if (!window.echarts) return;
    document.querySelectorAll(".chart[data-drawn]").forEach(function (el) {
      var chart = window.echarts.getInstanceByDom(el);
      if (chart) chart.resize();
    });
  }

  // A chart as PNG, for the journey map's export button (data-export-chart="#id").
  function exportPng(event) {
    var button = event.target.closest("[data-export-chart]");
    if (!button || !window.echarts) return;
    var el = document.querySelector(button.dataset.exportChart);
    var chart = el && window.echarts.getInstanceByDom(el);
    if (!chart) return;
    var link = document.createElement("a");
    link.href = chart.getDataURL({ type: "png", pixelRatio: 2, backgroundColor: "#fff" });
    link.download = (button.dataset.filename || "chart") + ".png";
    link.click();
  }

  document.addEventListener("click", function (event) {
    var toggle = event.target.closest(".menu-toggle");
    if (toggle) {
      var nav = document.getElementById(toggle.getAttribute("aria-controls"));
      var open = nav.classList.toggle("open");
      toggle.setAttribute("aria-expanded", open ? "true" : "false");
    }
    if (event.target.closest("[data-print]")) window.print();
    exportPng(event);
  });
  document.addEventListener("DOMContentLoaded", function () { draw(document); });
  document.addEventListener("htmx:afterSettle", function (event) { draw(event.target); });
  window.addEventListener("resize", resizeAll);
})();

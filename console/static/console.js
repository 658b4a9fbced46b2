// sagaflow console: live refresh and the workflow diagram. No framework,
// no build step. Every element with data-refresh is replaced every
// data-refresh-ms (on <body>) with the HTML its URL returns, until the
// fetched content says data-final, the Live box is unticked or the tab is
// hidden.
(function () {
  "use strict";
  var interval = parseInt(document.body.dataset.refreshMs, 10) || 2000;
  var lastDiagram = null;
  var lastSVG = "";
  var diagramSeq = 0;

  function live() {
    var box = document.getElementById("live-toggle");
    return !box || box.checked;
  }

  function poll(el) {
    if (el.dataset.final === "true") {
      return;
    }
    var busy = false;
    var timer = setInterval(function () {
      if (busy || document.hidden || !live()) {
        return;
      }
      busy = true;
      fetch(el.dataset.refresh, { headers: { "Accept": "text/html" }, cache: "no-store" })
        .then(function (res) {
          if (!res.ok) {
            throw new Error(res.status + " " + res.statusText);
          }
          return res.text();
        })
        .then(function (html) {
          el.innerHTML = html;
          el.classList.remove("stale");
          drawDiagram();
          if (el.querySelector("[data-final='true']")) {
            el.dataset.final = "true";
            clearInterval(timer);
            var box = document.getElementById("live-toggle");
            if (box) {
              box.closest("label").classList.add("done");
            }
          }
        })
        .catch(function (err) {
          el.classList.add("stale");
          el.title = "refresh failed: " + err.message;
        })
        .finally(function () {
          busy = false;
        });
    }, interval);
  }

  // drawDiagram renders the Mermaid text of .diagram-src into #diagram.
  // Mermaid runs only when the text changed; otherwise the last drawing
  // is put back into the element the refresh just replaced.
  function drawDiagram() {
    var src = document.querySelector(".diagram-src");
    var target = document.getElementById("diagram");
    if (!src || !target || typeof mermaid === "undefined") {
      return;
    }
    var text = src.textContent;
    if (text === lastDiagram) {
      if (lastSVG && !target.querySelector("svg")) {
        target.innerHTML = lastSVG;
        target.classList.add("drawn");
      }
      return;
    }
    lastDiagram = text;
    diagramSeq++;
    mermaid.render("workflow-diagram-" + diagramSeq, text).then(function (out) {
      lastSVG = out.svg;
      var t = document.getElementById("diagram");
      if (t) {
        t.innerHTML = out.svg;
        t.classList.add("drawn");
      }
    }).catch(function (err) {
      var t = document.getElementById("diagram");
      if (t) {
        t.textContent = "The diagram could not be drawn: " + err;
      }
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    if (typeof mermaid !== "undefined") {
      mermaid.initialize({
        startOnLoad: false,
        securityLevel: "strict",
        theme: "base",
        themeVariables: {
          fontFamily: "ui-sans-serif, system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif",
          fontSize: "14px",
          primaryColor: "#f8fafc",
          primaryBorderColor: "#94a3b8",
          primaryTextColor: "#0f172a",
          lineColor: "#94a3b8"
        },
        flowchart: { curve: "basis", htmlLabels: true }
      });
      drawDiagram();
    }
    document.querySelectorAll("[data-refresh]").forEach(poll);
  });
})();

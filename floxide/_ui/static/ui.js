// floxide ui: live updates by short polling of the UI's own JSON API (no library).
// The run page polls /api/runs/RUN_ID?summary=1 every second while the run is live and
// updates the graph's per-node counts and colours, the progress line, the status and the
// buttons in place; when errors, outputs or the status change it reloads the details
// section (drawn and escaped by the server). The runs and workers tables are refreshed
// the same way. Every value is written with textContent, never as HTML.
"use strict";

(function () {
  var PERIOD = 1000;

  function stateOf(c) {
    if (c.failed) return "failed";
    if (c.in_flight) return "running";
    if (c.queued) return "queued";
    if (c.done) return "done";
    return "idle";
  }

  function show(v) {
    return v === null || v === undefined ? "\u2013" : String(v);
  }

  function seconds(s) {
    if (typeof s !== "number") return "\u2013";
    if (s < 60) return s.toFixed(1) + " s";
    if (s < 3600) return Math.floor(s / 60) + " min " + Math.floor(s % 60) + " s";
    return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
  }

  function when(t) {
    if (typeof t !== "number" || !t) return "\u2013";
    var d = new Date(t * 1000);
    function p(n) { return (n < 10 ? "0" : "") + n; }
    return d.getFullYear() + "-" + p(d.getMonth() + 1) + "-" + p(d.getDate()) + " " +
      p(d.getHours()) + ":" + p(d.getMinutes()) + ":" + p(d.getSeconds());
  }

  function byAttr(root, attr, value) {
    var out = [];
    var all = root.querySelectorAll("[" + attr + "]");
    for (var i = 0; i < all.length; i++) {
      if (all[i].getAttribute(attr) === value) out.push(all[i]);
    }
    return out;
  }

  function setText(root, key, value) {
    var els = root.querySelectorAll('[data-k="' + key + '"]');
    for (var i = 0; i < els.length; i++) els[i].textContent = value;
  }

  function updateNodes(nodes) {
    Object.keys(nodes).forEach(function (name) {
      var c = nodes[name];
      byAttr(document, "data-node", name).forEach(function (el) {
        ["done", "in_flight", "queued", "failed", "retried"].forEach(function (k) {
          setText(el, k, show(c[k]));
        });
        if (el.tagName.toLowerCase() === "g") {
          var cls = el.getAttribute("class").split(" ").filter(function (x) {
            return x.indexOf("state-") !== 0 && x !== "retried";
          });
          cls.push("state-" + stateOf(c));
          if (c.retried) cls.push("retried");
          el.setAttribute("class", cls.join(" "));
        } else if (c.mean_ms !== null && c.mean_ms !== undefined) {
          setText(el, "latency", c.mean_ms.toFixed(2) + " / " + (c.max_ms || 0).toFixed(2));
        }
      });
    });
  }

  function updateRun(run) {
    var main = document.querySelector("main");
    var p = run.progress;
    ["done", "known", "in_flight", "queued", "failed", "retried"].forEach(function (k) {
      setText(main.querySelector(".progress-line"), k, show(p[k]));
    });
    var bar = document.getElementById("run-progress");
    if (bar) { bar.max = Math.max(1, p.known); bar.value = p.done; }
    var status = document.getElementById("run-status");
    if (status) {
      status.textContent = run.status;
      status.setAttribute("class", "status status-" + run.status);
    }
    setText(main, "duration", seconds(run.duration));
    setText(main, "finished_at", when(run.finished_at));
    var forms = document.querySelectorAll("form.action");
    for (var i = 0; i < forms.length; i++) {
      forms[i].hidden = run.actions.indexOf(forms[i].getAttribute("data-action")) < 0;
    }
    updateNodes(run.nodes);
  }

  function get(url, kind) {
    return fetch(url, { credentials: "same-origin", cache: "no-store" }).then(function (r) {
      if (!r.ok) throw new Error(url + ": " + r.status);
      return kind === "json" ? r.json() : r.text();
    });
  }

  function replaceHtml(el, text) {
    // The server drew and escaped this fragment; parse it inertly, then move it in.
    var doc = new DOMParser().parseFromString("<body>" + text + "</body>", "text/html");
    el.replaceChildren.apply(el, Array.prototype.slice.call(doc.body.childNodes));
  }

  function runPage(body) {
    var api = body.getAttribute("data-run-api");
    var detailsUrl = body.getAttribute("data-details");
    var seen = null;
    var busy = false;
    var ticks = 0;
    var timer = null;
    function tick() {
      if (busy) return;
      busy = true;
      get(api, "json").then(function (run) {
        updateRun(run);
        var mark = run.status + "|" + run.errors_total + "|" + run.outputs_total;
        var changed = seen !== null && mark !== seen;
        seen = mark;
        body.setAttribute("data-updates", String(++ticks));
        if (run.finished && !changed && ticks > 1) {
          clearInterval(timer);  // nothing changes any more (a retry reloads the page)
        }
        if (changed) {
          return get(detailsUrl, "text").then(function (html) {
            replaceHtml(document.getElementById("details"), html);
          });
        }
      }).catch(function () { /* the server went away: try again next tick */ })
        .then(function () { busy = false; });
    }
    tick();
    timer = setInterval(tick, PERIOD);
    var ctx = document.querySelector("a.load-context");
    if (ctx) {
      ctx.addEventListener("click", function (ev) {
        ev.preventDefault();
        var box = document.getElementById("context-body");
        get(box.getAttribute("data-url"), "json").then(function (value) {
          var pre = document.createElement("pre");
          pre.className = "json";
          pre.textContent = JSON.stringify(value, null, 2);
          box.replaceChildren(pre);
        });
      });
    }
  }

  function refreshing(el, period) {
    var url = el.getAttribute("data-refresh");
    var busy = false;
    setInterval(function () {
      if (busy || document.hidden) return;
      busy = true;
      get(url, "text").then(function (html) { replaceHtml(el, html); })
        .catch(function () {}).then(function () { busy = false; });
    }, period);
  }

  document.addEventListener("DOMContentLoaded", function () {
    var body = document.body;
    if (body.hasAttribute("data-run-api")) runPage(body);
    var tables = document.querySelectorAll("[data-refresh]");
    for (var i = 0; i < tables.length; i++) refreshing(tables[i], 2000);
  });
})();

// cookiesync support console: local times, confirmations, gentle refresh. No build step.
(function () {
  "use strict";
  var fmt = { year: "numeric", month: "short", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit" };

  function localize(root) {
    root.querySelectorAll("time[datetime]").forEach(function (t) {
      var iso = t.getAttribute("datetime");
      var d = new Date(iso);
      if (isNaN(d.getTime())) return;
      t.title = iso + " (UTC)";
      t.textContent = d.toLocaleString(undefined, fmt);
    });
    root.querySelectorAll("[data-utc-hour]").forEach(function (el) {
      var d = new Date(el.getAttribute("data-utc-hour"));
      if (isNaN(d.getTime())) return;
      el.textContent = d.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
    });
    var zone = "local time";
    try { zone = Intl.DateTimeFormat().resolvedOptions().timeZone || zone; } catch (e) { /* old browser */ }
    root.querySelectorAll("[data-tz]").forEach(function (el) { el.textContent = zone; });
  }

  function confirmations(root) {
    root.querySelectorAll("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (ev) {
        if (!window.confirm(form.getAttribute("data-confirm"))) {
          ev.preventDefault();
          return;
        }
        var b = form.querySelector("button[type=submit]");
        if (b) { setTimeout(function () { b.disabled = true; }, 0); }
      });
    });
  }

  function refresh() {
    var seconds = parseFloat(document.body.getAttribute("data-refresh") || "");
    if (!(seconds > 0)) return;
    setTimeout(function () {
      var busy = document.activeElement && /^(INPUT|SELECT|TEXTAREA)$/.test(document.activeElement.tagName);
      if (!busy && !document.querySelector("details[open]")) {
        var url = new URL(window.location.href);
        url.searchParams.delete("done");
        url.searchParams.delete("note");
        window.location.replace(url.toString());
      }
    }, seconds * 1000);
  }

  document.addEventListener("DOMContentLoaded", function () {
    localize(document);
    confirmations(document);
    refresh();
  });
})();

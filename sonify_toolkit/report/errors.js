// Loaded first: any script error, failed resource or console.error is written into #page-errors, so a
// headless browser's DOM dump shows whether the page loaded cleanly.
(function () {
  "use strict";
  const seen = [];
  function record(msg) {
    seen.push(String(msg));
    const box = document.getElementById("page-errors");
    if (box) { box.textContent = seen.join("\n"); box.hidden = false; }
    document.documentElement.setAttribute("data-errors", String(seen.length));
  }
  window.addEventListener("error", (e) => {
    const t = e.target;
    if (t && t !== window && (t.src || t.href)) record("failed to load " + (t.src || t.href));
    else record(e.message || "script error");
  }, true);
  window.addEventListener("unhandledrejection", (e) => record("unhandled rejection: " + e.reason));
  const original = console.error;
  console.error = function (...args) { record(args.join(" ")); original.apply(console, args); };
  document.addEventListener("DOMContentLoaded", () => {
    const box = document.getElementById("page-errors");
    if (box && seen.length) { box.textContent = seen.join("\n"); box.hidden = false; }
  });
})();

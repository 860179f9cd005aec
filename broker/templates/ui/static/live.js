// Writ dashboard: reload a live page when the audit log has grown (a new
// decision was recorded). Same-origin only; no other script runs.
(function () {
  "use strict";
  var size = document.body.getAttribute("data-live");
  if (size === null) {
    return;
  }
  window.setInterval(function () {
    fetch("/ui/live", { credentials: "same-origin", cache: "no-store", redirect: "manual" })
      .then(function (r) {
        if (r.type === "opaqueredirect" || r.status === 401) {
          window.location.assign("/ui/login");
          return null;
        }
        return r.ok ? r.text() : null;
      })
      .then(function (t) {
        if (t !== null && t.trim() !== size) {
          window.location.reload();
        }
      })
      .catch(function () {});
  }, 3000);
})();

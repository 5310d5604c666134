// Live prediction states, upload progress and the report's print button. No framework.
(function () {
  "use strict";
  var FINAL = { succeeded: true, failed: true };

  function pollPredictions() {
    var badges = Array.prototype.slice.call(document.querySelectorAll("[data-prediction]"));
    var pending = badges.filter(function (b) { return !FINAL[b.dataset.status]; });
    if (!pending.length) return;
    var ids = pending.map(function (b) { return b.dataset.prediction; }).join(",");
    var url = document.body.dataset.statusUrl + "?ids=" + encodeURIComponent(ids);
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
      .then(function (data) {
        var finished = false;
        pending.forEach(function (badge) {
          var state = data.predictions[badge.dataset.prediction];
          if (!state || state.status === badge.dataset.status) return;
          badge.dataset.status = state.status;
          badge.className = "status status-" + state.status;
          badge.textContent = state.status.charAt(0).toUpperCase() + state.status.slice(1);
          if (FINAL[state.status]) finished = true;
        });
        // A finished prediction brings probabilities and heatmaps: show them, unless the reader
        // is busy (a reading half-written, the viewer in use): then offer the reload instead.
        if (finished) reloadWhenIdle();
        else window.setTimeout(pollPredictions, 2000);
      })
      .catch(function () { window.setTimeout(pollPredictions, 5000); });
  }

  function readerIsBusy() {
    var form = document.querySelector("form.reading-form");
    var typing = form && (form.querySelector("input[type=radio]:checked") ||
      Array.prototype.some.call(form.querySelectorAll("textarea"), function (t) { return t.value.trim(); }));
    var viewing = document.activeElement && document.activeElement.closest("[data-viewer]");
    return Boolean(typing || viewing);
  }

  function reloadWhenIdle() {
    if (!readerIsBusy()) { window.location.reload(); return; }
    if (document.querySelector(".result-arrived")) return;
    var notice = document.createElement("p");
    notice.className = "message result-arrived";
    notice.setAttribute("role", "status");
    notice.textContent = "A new result has arrived. ";
    var button = document.createElement("button");
    button.type = "button";
    button.textContent = "Reload to see it";
    button.addEventListener("click", function () { window.location.reload(); });
    notice.appendChild(button);
    document.querySelector("main").prepend(notice);
  }

  function uploadWithProgress(form) {
    form.addEventListener("submit", function (event) {
      if (!window.FormData || !window.XMLHttpRequest) return; // plain submit still works
      event.preventDefault();
      var bar = form.querySelector("progress");
      var errors = form.querySelector(".upload-errors");
      var button = form.querySelector("button[type=submit]");
      errors.textContent = "";
      bar.hidden = false;
      button.disabled = true;
      var xhr = new XMLHttpRequest();
      xhr.open("POST", form.action || window.location.href);
      xhr.setRequestHeader("Accept", "application/json");
      xhr.upload.addEventListener("progress", function (e) {
        if (e.lengthComputable) bar.value = Math.round((e.loaded / e.total) * 100);
      });
      xhr.addEventListener("load", function () {
        var body = {};
        try { body = JSON.parse(xhr.responseText); } catch (e) { /* not JSON */ }
        if (xhr.status === 201 && body.redirect) { window.location.assign(body.redirect); return; }
        button.disabled = false;
        bar.hidden = true;
        // Every error body is {"detail": "...", "errors": {"field": ["...", ...]}}.
        var messages = [];
        Object.keys(body.errors || {}).forEach(function (field) {
          messages = messages.concat(body.errors[field]);
        });
        errors.textContent = messages.join(" ") || body.detail ||
          "The upload failed (HTTP " + xhr.status + "). Please try again.";
      });
      xhr.addEventListener("error", function () {
        button.disabled = false;
        errors.textContent = "The connection was lost during the upload. Nothing was stored; please try again.";
      });
      xhr.send(new FormData(form));
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("form[data-upload-progress]").forEach(uploadWithProgress);
    document.querySelectorAll("[data-print]").forEach(function (button) {
      button.addEventListener("click", function () { window.print(); });
    });
    window.setTimeout(pollPredictions, 1500);
  });
})();

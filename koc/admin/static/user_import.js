// The user-base import on /admin/users. No inline script: loaded from this file only. Every
// call goes through /api/v1 with the staff session and the X-CSRFToken header (api.js):
// 1. POST /api/v1/users/imports with the file's name, type and size: an import and where to
//    upload it (one presigned PUT, or one per multipart part);
// 2. PUT the bytes there with a progress bar (parts one after another: memory stays flat);
// 3. POST /api/v1/users/imports/{id}/start: the job; then poll GET /api/v1/jobs/{id} for its
//    progress (lines, refused, rate, time left);
// 4. show the first refused lines and offer the refused-lines report as CSV (a panel page).
(function () {
  "use strict";

  var form = document.getElementById("user-import");
  if (!form) {
    return;
  }
  var input = document.getElementById("import-file");
  var encoding = document.getElementById("import-encoding");
  var uploadBar = document.getElementById("upload-progress");
  var jobBar = document.getElementById("job-progress");
  var status = document.getElementById("import-status");
  var errorTable = document.getElementById("import-errors");
  var report = document.getElementById("import-report");
  var button = form.querySelector("button[type=submit]");
  var POLL_MS = 1000;
  var SHOWN_ERRORS = 20;

  function message(name, values) {
    var text = form.getAttribute("data-msg-" + name) || name;
    Object.keys(values || {}).forEach(function (key) {
      text = text.split("{" + key + "}").join(values[key]);
    });
    return text;
  }

  function request(method, path, body) {
    return window.kocApi(method, path, body).then(function (answer) {
      if (!answer.ok || !answer.body || typeof answer.body !== "object") {
        throw new Error(window.kocApiErrors(answer.body).join("; ") || String(answer.status));
      }
      return answer.body;
    }, function () {
      throw new Error(message("network"));
    });
  }

  function showErrors(errors) {
    var body = errorTable.querySelector("tbody");
    while (body.firstChild) {
      body.removeChild(body.firstChild);
    }
    errors.forEach(function (error) {
      var row = document.createElement("tr");
      [error.line, error.message].forEach(function (text) {
        var td = document.createElement("td");
        td.textContent = text === null || text === undefined ? "" : String(text);
        row.appendChild(td);
      });
      body.appendChild(row);
    });
    errorTable.hidden = errors.length === 0;
  }

  function poll(jobId) {
    return request("GET", "/api/v1/jobs/" + jobId).then(function (job) {
      var progress = job.result || {};
      var errors = (job.errors || []).slice(0, SHOWN_ERRORS);
      var size = progress.size || 0;
      if (size && progress.bytes_read !== null && progress.bytes_read !== undefined) {
        jobBar.value = Math.min(100, 100 * progress.bytes_read / size);
      }
      if (job.status === "succeeded" || job.status === "failed") {
        jobBar.value = job.status === "succeeded" ? 100 : jobBar.value;
        status.textContent = job.status === "succeeded"
          ? message("done", { processed: job.processed, failed: job.failed })
          : message("failed", { reason: (errors[0] || {}).message || job.status });
        showErrors(errors);
        if (job.failed) {
          report.href = form.getAttribute("data-report-url").replace("/0/", "/" + jobId + "/");
          report.hidden = false;
        }
        button.disabled = false;
        input.disabled = false;
        return null;
      }
      status.textContent = message("running", {
        lines: progress.lines_read || 0, processed: job.processed, failed: job.failed,
        rate: progress.rows_per_second || 0,
        eta: progress.eta_seconds === null || progress.eta_seconds === undefined
          ? "?" : progress.eta_seconds
      });
      showErrors(errors);
      return new Promise(function (resolve) {
        window.setTimeout(resolve, POLL_MS);
      }).then(function () {
        return poll(jobId);
      });
    });
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var file = input.files && input.files[0];
    if (!file) {
      input.focus();
      return;
    }
    if (file.size > Number(form.getAttribute("data-max-bytes"))) {
      status.textContent = message("failed", { reason: message("too-large") });
      return;
    }
    button.disabled = true;
    input.disabled = true;
    report.hidden = true;
    uploadBar.value = 0;
    jobBar.value = 0;
    status.textContent = message("uploading", { name: file.name });
    request("POST", "/api/v1/users/imports", {
      filename: file.name, content_type: file.type || "text/csv", size: file.size,
      encoding: encoding.value
    }).then(function (created) {
      return window.kocPresignedUpload(file, created.upload, function (percent) {
        uploadBar.value = percent;
      }, message("network")).then(function (parts) {
        status.textContent = message("starting");
        return request("POST", "/api/v1/users/imports/" + created.import_id + "/start",
                       parts ? { parts: parts } : {});
      });
    }).then(function (started) {
      return poll(started.job_id);
    }).catch(function (error) {
      status.textContent = message("failed", { reason: error.message });
      button.disabled = false;
      input.disabled = false;
    });
  });
}());

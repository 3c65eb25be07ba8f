// The user-base import on /admin/users. No inline script: loaded from this file only.
// 1. POST the file's name, type and size (session cookie + X-CSRFToken): an import and where
//    to upload it (one presigned PUT, or one per multipart part);
// 2. PUT the bytes there with a progress bar (parts one after another: memory stays flat);
// 3. POST .../start: the job; then poll the job's progress (lines, refused, rate, time left);
// 4. show the first refused lines and offer the refused-lines report as CSV.
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

  function message(name, values) {
    var text = form.getAttribute("data-msg-" + name) || name;
    Object.keys(values || {}).forEach(function (key) {
      text = text.split("{" + key + "}").join(values[key]);
    });
    return text;
  }

  function request(method, url, body) {
    return new Promise(function (resolve, reject) {
      var xhr = new XMLHttpRequest();
      xhr.open(method, url);
      xhr.setRequestHeader("Content-Type", "application/json");
      xhr.setRequestHeader("X-CSRFToken", form.getAttribute("data-csrf-token"));
      xhr.setRequestHeader("Accept", "application/json");
      xhr.onload = function () {
        var data = null;
        try {
          data = JSON.parse(xhr.responseText);
        } catch (ignored) {
          data = null;
        }
        if (xhr.status >= 200 && xhr.status < 300 && data) {
          resolve(data);
        } else {
          reject(new Error((data && data.message) || String(xhr.status)));
        }
      };
      xhr.onerror = function () {
        reject(new Error(message("network")));
      };
      xhr.send(body === undefined ? null : JSON.stringify(body));
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

  function poll(started) {
    return request("GET", started.job_url).then(function (job) {
      var size = job.size || 0;
      if (size && job.bytes_read !== null) {
        jobBar.value = Math.min(100, 100 * job.bytes_read / size);
      }
      if (job.status === "succeeded" || job.status === "failed") {
        jobBar.value = job.status === "succeeded" ? 100 : jobBar.value;
        status.textContent = job.status === "succeeded"
          ? message("done", { processed: job.processed, failed: job.failed })
          : message("failed", { reason: (job.errors[0] || {}).message || job.status });
        showErrors(job.errors);
        if (job.failed) {
          report.href = started.report_url;
          report.hidden = false;
        }
        button.disabled = false;
        input.disabled = false;
        return null;
      }
      status.textContent = message("running", {
        lines: job.lines_read || 0, processed: job.processed, failed: job.failed,
        rate: job.rows_per_second || 0, eta: job.eta_seconds === null ? "?" : job.eta_seconds
      });
      showErrors(job.errors);
      return new Promise(function (resolve) {
        window.setTimeout(resolve, POLL_MS);
      }).then(function () {
        return poll(started);
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
    request("POST", form.getAttribute("data-create-url"), {
      filename: file.name, content_type: file.type || "text/csv", size: file.size,
      encoding: encoding.value
    }).then(function (created) {
      return window.kocPresignedUpload(file, created.upload, function (percent) {
        uploadBar.value = percent;
      }, message("network")).then(function (parts) {
        status.textContent = message("starting");
        return request("POST", created.start_url, parts ? { parts: parts } : {});
      });
    }).then(poll).catch(function (error) {
      status.textContent = message("failed", { reason: error.message });
      button.disabled = false;
      input.disabled = false;
    });
  });
}());

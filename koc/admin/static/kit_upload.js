// Direct-to-storage upload for the kit page. No inline script: loaded from this file only.
// 1. POST the file's name, type and size to POST /api/v1/kits/{id}/assets (the session cookie
//    and the X-CSRFToken header: the API takes a panel session with its CSRF token);
// 2. PUT the bytes where the presigned request says (the object store, or the app's /storage
//    route in the embedded set-up), one request or one per multipart part, with progress;
// 3. POST /api/v1/kits/{id}/assets/{asset_id}/complete, then reload the page.
(function () {
  "use strict";

  var form = document.getElementById("kit-upload");
  if (!form) {
    return;
  }
  var input = document.getElementById("upload-file");
  var bar = document.getElementById("upload-progress");
  var status = document.getElementById("upload-status");
  var button = form.querySelector("button[type=submit]");
  var DONE_KEY = "koc.kitUpload.done";
  // Headers the browser sets itself and refuses from scripts.
  var TYPES_BY_EXTENSION = {
    jpg: "image/jpeg", jpeg: "image/jpeg", png: "image/png", webp: "image/webp",
    gif: "image/gif", heic: "image/heic", mp4: "video/mp4", mov: "video/quicktime",
    pdf: "application/pdf", zip: "application/zip", txt: "text/plain", md: "text/markdown"
  };

  function message(name, values) {
    var text = form.getAttribute("data-msg-" + name) || name;
    Object.keys(values || {}).forEach(function (key) {
      text = text.split("{" + key + "}").join(values[key]);
    });
    return text;
  }

  function show(percent, text) {
    bar.value = Math.max(0, Math.min(100, percent));
    if (text !== undefined) {
      status.textContent = text;
    }
  }

  function contentType(file) {
    if (file.type) {
      return file.type;
    }
    var dot = file.name.lastIndexOf(".");
    var ext = dot >= 0 ? file.name.slice(dot + 1).toLowerCase() : "";
    return TYPES_BY_EXTENSION[ext] || "application/octet-stream";
  }

  // A JSON request to the app itself, with the session cookie and the CSRF token.
  function postJson(url, body) {
    return new Promise(function (resolve, reject) {
      var xhr = new XMLHttpRequest();
      xhr.open("POST", url);
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
      xhr.send(JSON.stringify(body || {}));
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
      show(0, message("failed", { reason: message("too-large") }));
      return;
    }
    button.disabled = true;
    input.disabled = true;
    show(0, message("uploading", { name: file.name }));
    postJson(form.getAttribute("data-create-url"), {
      filename: file.name, content_type: contentType(file), size: file.size
    }).then(function (created) {
      return window.kocPresignedUpload(file, created.upload, function (percent) {
        show(percent);
      }, message("network")).then(function (parts) {
        show(100, message("finishing"));
        var complete = form.getAttribute("data-create-url") + "/" + created.asset_id + "/complete";
        return postJson(complete, parts ? { parts: parts } : {});
      });
    }).then(function () {
      show(100, message("done", { name: file.name }));
      try {
        window.sessionStorage.setItem(DONE_KEY, status.textContent);
      } catch (ignored) {
        // Private mode: the page still reloads with the new file in the list.
      }
      window.location.reload();
    }).catch(function (error) {
      show(0, message("failed", { reason: error.message }));
      button.disabled = false;
      input.disabled = false;
    });
  });

  // After the reload: keep the finished bar and its message on screen once.
  try {
    var last = window.sessionStorage.getItem(DONE_KEY);
    if (last) {
      window.sessionStorage.removeItem(DONE_KEY);
      show(100, last);
    }
  } catch (ignored) {
    // sessionStorage unavailable: nothing to restore.
  }
}());

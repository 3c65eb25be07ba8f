// The member portal's only script: no framework, no inline code. Writes go to /api/v1 with the
// session cookie (sent by the browser) and the page's X-CSRF-Token; the join page trades the
// token it gets for that cookie at /m/session.
(function () {
  "use strict";

  function meta(name) {
    var el = document.querySelector('meta[name="' + name + '"]');
    return el ? el.getAttribute("content") : "";
  }

  function randomKey() {
    var bytes = new Uint8Array(16);
    (window.crypto || window.msCrypto).getRandomValues(bytes);
    return Array.prototype.map.call(bytes, function (b) {
      return ("0" + b.toString(16)).slice(-2);
    }).join("");
  }

  // One XHR; resolves {status, data, xhr}. onProgress gets a 0..100 upload percentage.
  function request(method, url, options) {
    options = options || {};
    return new Promise(function (resolve, reject) {
      var xhr = new XMLHttpRequest();
      xhr.open(method, url);
      var headers = options.headers || {};
      Object.keys(headers).forEach(function (name) { xhr.setRequestHeader(name, headers[name]); });
      if (options.onProgress && xhr.upload) {
        xhr.upload.onprogress = function (event) {
          if (event.lengthComputable) { options.onProgress(event.loaded / event.total * 100); }
        };
      }
      xhr.onload = function () {
        var data = null;
        try { data = JSON.parse(xhr.responseText); } catch (e) { data = null; }
        resolve({ status: xhr.status, data: data, xhr: xhr });
      };
      xhr.onerror = function () { reject(new Error("network")); };
      xhr.send(options.body === undefined ? null : options.body);
    });
  }

  function api(method, url, body, extra) {
    var headers = { "Accept": "application/json", "X-CSRF-Token": meta("koc-api-csrf") };
    if (body !== undefined) { headers["Content-Type"] = "application/json"; }
    Object.keys(extra || {}).forEach(function (k) { headers[k] = extra[k]; });
    return request(method, url, { headers: headers,
      body: body === undefined ? undefined : JSON.stringify(body) });
  }

  // An API error as one line: its message and each named field's complaint.
  function explain(response, fallback) {
    var data = response && response.data;
    if (!data || !data.message) { return fallback; }
    var parts = [data.message];
    var errors = (data.errors && (data.errors.json || data.errors)) || {};
    Object.keys(errors).forEach(function (field) {
      var value = errors[field];
      if (Array.isArray(value)) { parts.push(field + ": " + value.join(", ")); }
    });
    return parts.join(" ");
  }

  function ok(response) { return response.status >= 200 && response.status < 300; }

  // --- join -------------------------------------------------------------------------------
  var join = document.getElementById("join-form");
  if (join) {
    join.addEventListener("submit", function (event) {
      event.preventDefault();
      var error = join.querySelector("[data-error]");
      var button = join.querySelector("button[type=submit]");
      var accounts = [];
      join.querySelectorAll("[data-account]").forEach(function (box) {
        var platform = box.querySelector("[name=platform]").value;
        var handle = box.querySelector("[name=handle]").value.trim();
        if (!platform || !handle) { return; }
        var url = box.querySelector("[name=url]").value.trim();
        var followers = parseInt(box.querySelector("[name=followers]").value, 10);
        accounts.push({ platform: platform, handle: handle, url: url || null,
                        followers: isNaN(followers) ? 0 : followers });
      });
      var body = { display_name: join.elements.display_name.value.trim(),
                   accept_terms: join.elements.accept_terms.checked,
                   social_accounts: accounts };
      button.disabled = true;
      error.textContent = join.getAttribute("data-msg-working");
      request("POST", join.getAttribute("data-accept-url"), {
        headers: { "Content-Type": "application/json", "Accept": "application/json" },
        body: JSON.stringify(body)
      }).then(function (accepted) {
        if (!ok(accepted)) { throw accepted; }
        // The invitation is used now: keep trying to sign in with its token a few times, as
        // a lost answer here would leave the new member signed out.
        var startSession = function (attempt) {
          return request("POST", join.getAttribute("data-session-url"), {
            headers: { "Content-Type": "application/json", "X-CSRFToken": meta("koc-form-csrf") },
            body: JSON.stringify({ token: accepted.data.token })
          }).catch(function (failure) {
            if (attempt >= 3) { throw failure; }
            return new Promise(function (resolve) {
              window.setTimeout(function () { resolve(startSession(attempt + 1)); }, 1000 * attempt);
            });
          });
        };
        return startSession(1);
      }).then(function (started) {
        if (!ok(started)) { throw started; }
        window.location.assign(started.data.next);
      }).catch(function (response) {
        button.disabled = false;
        error.textContent = explain(response, join.getAttribute("data-msg-failed"));
      });
    });
  }

  // --- kit downloads ----------------------------------------------------------------------
  function download(button, attempt) {
    var status = button.closest(".kit").querySelector(".status");
    button.disabled = true;
    api("GET", button.getAttribute("data-url")).then(function (response) {
      if (response.status === 202 && attempt < 30) {
        status.textContent = button.getAttribute("data-msg-preparing");
        var wait = parseInt(response.xhr.getResponseHeader("Retry-After"), 10) || 2;
        window.setTimeout(function () { download(button, attempt + 1); }, wait * 1000);
        return;
      }
      button.disabled = false;
      if (!ok(response)) {
        status.textContent = explain(response, button.getAttribute("data-msg-failed"));
        return;
      }
      status.textContent = "";
      window.location.assign(response.data.url);
    }, function () {
      button.disabled = false;
      status.textContent = button.getAttribute("data-msg-failed");
    });
  }
  document.querySelectorAll("button.download").forEach(function (button) {
    button.addEventListener("click", function () { download(button, 0); });
  });

  // --- submit a post ----------------------------------------------------------------------
  var URL_IN_TEXT = /https?:\/\/[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+/i;
  function platformOf(url) {
    var host = (url.split("/")[2] || "").toLowerCase();
    if (/(^|\.)(xiaohongshu\.com|xhslink\.com|xhslink\.cn)$/.test(host)) { return "xiaohongshu"; }
    if (/(^|\.)(douyin\.com|iesdouyin\.com)$/.test(host)) { return "douyin"; }
    if (/(^|\.)(weibo\.com|weibo\.cn)$/.test(host)) { return "weibo"; }
    return null;
  }

  var submit = document.getElementById("submit-form");
  if (submit) {
    var found = submit.querySelector("[data-found-url]");
    var bar = submit.querySelector("[data-upload-progress]");
    var error = submit.querySelector("[data-error]");
    var status = submit.querySelector("[data-status]");
    var idempotencyKey = null;
    var msg = function (name, values) {
      var text = submit.getAttribute("data-msg-" + name) || name;
      Object.keys(values || {}).forEach(function (k) { text = text.split("{" + k + "}").join(values[k]); });
      return text;
    };
    var posted = submit.elements.posted_at;
    if (!posted.value) {
      var now = new Date(Date.now() - new Date().getTimezoneOffset() * 60000);
      posted.value = now.toISOString().slice(0, 16);
    }
    submit.elements.share_text.addEventListener("input", function () {
      var match = URL_IN_TEXT.exec(this.value);
      var url = match ? match[0].replace(/[.,;:!?)\]'"]+$/, "") : "";
      found.textContent = url;
      var platform = url && platformOf(url);
      if (platform) { submit.elements.platform.value = platform; }
      idempotencyKey = null;
    });

    var uploadOne = function (file, index, count) {
      return api("POST", submit.getAttribute("data-uploads-url"), {
        filename: file.name.slice(-200) || "screenshot", content_type: file.type || "image/jpeg",
        size: file.size
      }).then(function (created) {
        if (!ok(created)) { throw created; }
        var upload = created.data.upload;
        var headers = {};
        Object.keys(upload.headers || {}).forEach(function (name) {
          if (name.toLowerCase() !== "content-length" && name.toLowerCase() !== "host") {
            headers[name] = upload.headers[name];
          }
        });
        return request(upload.method || "PUT", upload.url, {
          headers: headers, body: file,
          onProgress: function (percent) {
            var overall = Math.round((index + percent / 100) / count * 100);
            bar.value = overall;
            status.textContent = msg("uploading", { name: file.name, percent: Math.round(percent) });
          }
        }).then(function (stored) {
          if (!ok(stored)) { throw stored; }
          return created.data.upload_id;
        });
      });
    };

    submit.addEventListener("submit", function (event) {
      event.preventDefault();
      error.textContent = "";
      var text = submit.elements.share_text.value.trim();
      if (!URL_IN_TEXT.test(text) && submit.elements.platform.value !== "wechat_channels") {
        error.textContent = msg("no-url");
        return;
      }
      var files = Array.prototype.slice.call(submit.elements.screenshots.files || []);
      var max = parseInt(submit.getAttribute("data-max-bytes"), 10);
      for (var i = 0; i < files.length; i++) {
        if (files[i].size > max) { error.textContent = msg("too-large", { name: files[i].name }); return; }
      }
      var button = submit.querySelector("button[type=submit]");
      button.disabled = true;
      bar.hidden = files.length === 0;
      bar.value = 0;
      idempotencyKey = idempotencyKey || randomKey();
      var ids = [];
      var chain = Promise.resolve();
      files.forEach(function (file, index) {
        chain = chain.then(function () {
          return uploadOne(file, index, files.length).then(function (id) { ids.push(id); });
        });
      });
      chain.then(function () {
        var metrics = {};
        ["views", "likes", "comments", "saves", "shares"].forEach(function (name) {
          var value = parseInt(submit.elements[name].value, 10);
          if (!isNaN(value)) { metrics[name] = value; }
        });
        var body = {
          platform: submit.elements.platform.value,
          // The whole share text: the service takes the URL out of it (and normalises it).
          post_url: text,
          caption: submit.elements.caption.value,
          posted_at: new Date(submit.elements.posted_at.value).toISOString(),
          media_upload_ids: ids,
          metrics: metrics
        };
        var kit = submit.elements.kit_id;
        if (kit && kit.value) { body.kit_id = parseInt(kit.value, 10); }
        return api("POST", submit.getAttribute("data-submissions-url"), body,
                   { "Idempotency-Key": idempotencyKey });
      }).then(function (created) {
        if (!ok(created)) { throw created; }
        bar.value = 100;
        status.textContent = msg("done");
        window.setTimeout(function () { window.location.reload(); }, 600);
      }).catch(function (response) {
        button.disabled = false;
        status.textContent = "";
        error.textContent = explain(response, msg("failed"));
      });
    });
  }

  // --- drop claims ------------------------------------------------------------------------
  document.querySelectorAll("button.claim").forEach(function (button) {
    var storeKey = "koc.claim." + button.getAttribute("data-url");
    button.addEventListener("click", function () {
      var status = button.parentNode.querySelector(".status");
      // Kept until the claim is answered, so a retry after a lost answer is the same claim.
      var key = window.sessionStorage.getItem(storeKey) || randomKey();
      window.sessionStorage.setItem(storeKey, key);
      button.disabled = true;
      api("POST", button.getAttribute("data-url"), undefined, { "Idempotency-Key": key })
        .then(function (response) {
          if (response.status < 500) { window.sessionStorage.removeItem(storeKey); }
          if (!ok(response)) { throw response; }
          status.textContent = button.getAttribute("data-msg-done");
          window.setTimeout(function () { window.location.reload(); }, 800);
        }).catch(function (response) {
          button.disabled = false;
          status.textContent = explain(response, button.getAttribute("data-msg-failed"));
        });
    });
  });
}());

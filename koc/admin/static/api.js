/* The admin panel's one way to write: /api/v1 with the staff session and the X-CSRFToken header.
 *
 * kocApi(method, path, body) resolves to {status, ok, body} (body parsed from JSON when the
 * answer is JSON); it never throws on a 4xx, so each page shows the API's own error message and
 * the fields it names. kocApiErrors(body) flattens the API's `errors` into "field: message" lines.
 */
(function () {
  "use strict";

  var meta = document.querySelector('meta[name="csrf-token"]');
  var token = meta ? meta.getAttribute("content") : "";

  function kocApi(method, path, body) {
    var options = {
      method: method,
      credentials: "same-origin",
      headers: { "X-CSRFToken": token, "Accept": "application/json" },
    };
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    return fetch(path, options).then(function (response) {
      var type = response.headers.get("Content-Type") || "";
      var parse = type.indexOf("json") >= 0 ? response.json() : response.text();
      return parse.then(function (parsed) {
        return { status: response.status, ok: response.ok, body: parsed,
                 headers: response.headers };
      });
    });
  }

  function flatten(value, path, out) {
    if (Array.isArray(value)) {
      value.forEach(function (item) { flatten(item, path, out); });
    } else if (value && typeof value === "object") {
      Object.keys(value).forEach(function (key) {
        var name = key === "json" || key === "_schema" ? path : (path ? path + "." + key : key);
        flatten(value[key], name, out);
      });
    } else if (value !== undefined && value !== null) {
      out.push((path ? path + ": " : "") + String(value));
    }
    return out;
  }

  function kocApiErrors(body) {
    if (!body || typeof body !== "object") {
      return [String(body || "")];
    }
    var lines = flatten(body.errors || {}, "", []);
    return lines.length ? lines : [body.message || String(body.status || "")];
  }

  window.kocApi = kocApi;
  window.kocApiErrors = kocApiErrors;
}());

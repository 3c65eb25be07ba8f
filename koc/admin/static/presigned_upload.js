// Bytes to the object store through the presigned upload the API hands out: one PUT, or one
// per multipart part, one after another so that memory stays flat whatever the file's size.
// Shared by the kit page (assets) and the user-base page (CRM imports). No inline script.
(function () {
  "use strict";

  // Headers a browser refuses to set (the store's presigned headers may name them).
  var FORBIDDEN = { "content-length": true, host: true, connection: true };

  // PUT bytes to a presigned URL; onBytes(loaded) reports the bytes sent so far.
  function put(url, headers, blob, onBytes, networkMessage) {
    return new Promise(function (resolve, reject) {
      var xhr = new XMLHttpRequest();
      xhr.open("PUT", url);
      Object.keys(headers || {}).forEach(function (name) {
        if (!FORBIDDEN[name.toLowerCase()]) {
          xhr.setRequestHeader(name, headers[name]);
        }
      });
      xhr.upload.onprogress = function (event) {
        onBytes(event.loaded);
      };
      xhr.onload = function () {
        if (xhr.status >= 200 && xhr.status < 300) {
          onBytes(blob.size);
          resolve(xhr.getResponseHeader("ETag"));
        } else {
          reject(new Error(networkMessage + " (" + xhr.status + ")"));
        }
      };
      xhr.onerror = function () {
        reject(new Error(networkMessage));
      };
      xhr.send(blob);
    });
  }

  // Upload `file` as `plan` (the API's "upload" object) says; onPercent(0-100) follows it.
  // Resolves with the parts and their ETags for the completing call, or null: a single PUT,
  // or a store whose CORS does not expose ETag (the server then lists the stored parts).
  function upload(file, plan, onPercent, networkMessage) {
    var total = file.size || 1;
    if (!plan.multipart) {
      return put(plan.url, plan.headers, file, function (loaded) {
        onPercent(100 * loaded / total);
      }, networkMessage).then(function () {
        return null;
      });
    }
    var done = 0;
    var etags = [];
    return plan.parts.reduce(function (previous, part) {
      return previous.then(function () {
        var start = (part.part_number - 1) * plan.part_size;
        return put(part.url, {}, file.slice(start, start + part.size), function (loaded) {
          onPercent(100 * (done + loaded) / total);
        }, networkMessage).then(function (etag) {
          done += part.size;
          etags.push({ part_number: part.part_number, etag: etag });
        });
      });
    }, Promise.resolve()).then(function () {
      return etags.every(function (p) { return p.etag; }) ? etags : null;
    });
  }

  window.kocPresignedUpload = upload;
})();

/* Live preview for the tier rules editor (/admin/tiers).
 *
 * While an admin edits the rules JSON, the text is sent (debounced) to POST /admin/tiers/preview
 * with the session's CSRF token in the X-CSRFToken header; the answer (counts and a sample of
 * members moving, or the errors naming each field) is shown in the preview panel. Nothing is
 * written: saving stays a normal form POST. Translated messages come from data-msg-* attributes.
 */
(function () {
  "use strict";

  var DELAY_MS = 400;
  var textarea = document.getElementById("rules");
  var panel = document.getElementById("preview");
  var form = document.getElementById("rules-form");
  if (!textarea || !panel || !form || !textarea.dataset.previewUrl) {
    return;
  }
  var csrf = form.querySelector('input[name="csrf_token"]').value;
  var status = document.getElementById("preview-status");
  var errors = document.getElementById("preview-errors");
  var sample = document.getElementById("preview-sample");
  var counts = {
    promotions: document.getElementById("preview-promotions"),
    demotions: document.getElementById("preview-demotions"),
    entering_grace: document.getElementById("preview-grace"),
  };
  var timer = null;
  var latest = 0;

  function message(name) {
    return panel.dataset["msg" + name] || "";
  }

  function clear(node) {
    while (node.firstChild) {
      node.removeChild(node.firstChild);
    }
  }

  function cell(row, text) {
    var td = document.createElement("td");
    td.textContent = text;
    row.appendChild(td);
    return td;
  }

  function showErrors(list) {
    clear(errors);
    list.forEach(function (error) {
      var li = document.createElement("li");
      li.className = "field-error";
      var code = document.createElement("code");
      code.textContent = error.field;
      li.appendChild(code);
      li.appendChild(document.createTextNode(": " + error.message));
      errors.appendChild(li);
    });
  }

  function showResult(result) {
    Object.keys(counts).forEach(function (key) {
      counts[key].textContent = String(result[key]);
    });
    clear(sample);
    if (!result.changes.length) {
      var empty = document.createElement("tr");
      cell(empty, message("None")).colSpan = 4;
      sample.appendChild(empty);
    }
    result.changes.forEach(function (change) {
      var row = document.createElement("tr");
      var link = document.createElement("a");
      link.href = panel.dataset.memberUrl + change.member_id;
      link.textContent = "#" + change.member_id;
      cell(row, "").appendChild(link);
      cell(row, change.from || message("NoTier"));
      cell(row, change.to || message("NoTier"));
      cell(row, change.reason);
      sample.appendChild(row);
    });
  }

  function preview() {
    var request = ++latest;
    status.textContent = message("Loading");
    panel.setAttribute("aria-busy", "true");
    fetch(textarea.dataset.previewUrl, {
      method: "POST",
      credentials: "same-origin",
      headers: {"Content-Type": "application/json", "X-CSRFToken": csrf},
      body: JSON.stringify({rules: textarea.value}),
    }).then(function (response) {
      var type = response.headers.get("Content-Type") || "";
      if (type.indexOf("application/json") === -1) {
        throw new Error("HTTP " + response.status);
      }
      return response.json().then(function (body) {
        return {ok: response.ok, body: body};
      });
    }).then(function (answer) {
      if (request !== latest) {
        return;  // an older answer arriving after a newer one
      }
      panel.removeAttribute("aria-busy");
      if (answer.ok) {
        showErrors([]);
        showResult(answer.body);
        status.textContent = message("Ready");
      } else {
        showErrors(answer.body.errors || []);
        status.textContent = message("Invalid");
      }
    }).catch(function () {
      if (request === latest) {
        panel.removeAttribute("aria-busy");
        status.textContent = message("Failed");
      }
    });
  }

  textarea.addEventListener("input", function () {
    window.clearTimeout(timer);
    timer = window.setTimeout(preview, DELAY_MS);
  });

  // With the script running, Preview updates the panel in place instead of reloading the page.
  var button = form.querySelector('button[value="preview"]');
  if (button) {
    button.addEventListener("click", function (event) {
      event.preventDefault();
      window.clearTimeout(timer);
      preview();
    });
  }
})();

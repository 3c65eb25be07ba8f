/* Webhooks pages: create, send a test event, replay a delivery, delete; all through
 * /api/v1/webhooks... with the session and the X-CSRFToken header (api.js). */
(function () {
  "use strict";

  if (!window.kocApi) { return; }
  var result = document.getElementById("list-result");

  function failed(node, prefix, answer) {
    node.textContent = prefix + " " + window.kocApiErrors(answer.body).join("; ");
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("button");
    if (!button) { return; }
    if (button.classList.contains("send-test") || button.classList.contains("replay")) {
      button.disabled = true;
      window.kocApi("POST", button.dataset.url).then(function (answer) {
        if (answer.ok) {
          result.textContent = result.dataset.msgSent;
          window.location.reload();
        } else {
          failed(result, result.dataset.msgFailed, answer);
          button.disabled = false;
        }
      });
    } else if (button.id === "delete-webhook") {
      if (!window.confirm(button.dataset.msgConfirm)) { return; }
      window.kocApi("DELETE", button.dataset.url).then(function (answer) {
        if (answer.ok) { window.location.href = button.dataset.back; }
        else { failed(result, result.dataset.msgFailed, answer); }
      });
    } else if (button.id === "generate-secret") {
      var bytes = new Uint8Array(24);
      window.crypto.getRandomValues(bytes);
      document.getElementById("webhook-secret").value = "whsec_" + Array.prototype.map.call(
        bytes, function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
    }
  });

  var form = document.getElementById("webhook-form");
  if (form) {
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var out = document.getElementById("webhook-result");
      var secret = document.getElementById("webhook-secret").value.trim();
      var body = {
        url: document.getElementById("webhook-url").value.trim(),
        format: document.getElementById("webhook-format").value,
        secret: secret || null,
        events: Array.prototype.filter.call(
          document.querySelectorAll("#webhook-events input"), function (box) { return box.checked; })
          .map(function (box) { return box.value; }),
      };
      window.kocApi("POST", "/api/v1/webhooks", body).then(function (answer) {
        if (answer.ok) {
          out.textContent = form.dataset.msgCreated;
          window.location.reload();
        } else {
          failed(out, form.dataset.msgFailed, answer);
        }
      });
    });
  }
}());

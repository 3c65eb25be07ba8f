/* The member page's actions (suspend / reactivate, change or lock the tier, with a reason):
 * one PATCH /api/v1/members/{id} carrying only what changed; the page reloads on success so the
 * timeline and the staff actions show the change. Messages come from data-msg-* attributes. */
(function () {
  "use strict";

  var form = document.getElementById("member-form");
  if (!form || !window.kocApi) {
    return;
  }
  var result = document.getElementById("member-result");

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var body = {};
    var status = document.getElementById("member-status").value;
    var tier = document.getElementById("member-tier").value;
    var locked = document.getElementById("member-locked").checked;
    if (status !== form.dataset.status) { body.status = status; }
    if (tier !== form.dataset.tier) { body.tier = tier === "" ? null : tier; }
    if (String(locked) !== form.dataset.locked) { body.tier_locked = locked; }
    if (Object.keys(body).length === 0) {
      result.textContent = form.dataset.msgNochange;
      return;
    }
    body.reason = document.getElementById("member-reason").value.trim();
    document.getElementById("member-save").disabled = true;
    window.kocApi("PATCH", form.dataset.url, body).then(function (answer) {
      if (answer.ok) {
        result.textContent = form.dataset.msgSaved;
        window.location.reload();
        return;
      }
      result.textContent = form.dataset.msgFailed + " " + window.kocApiErrors(answer.body).join("; ");
      document.getElementById("member-save").disabled = false;
    });
  });
}());

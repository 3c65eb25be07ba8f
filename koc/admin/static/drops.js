/* Drops page: the "Draw the lottery now" button, POST /api/v1/drops/{id}/draw with the session
 * and the X-CSRFToken header; the page reloads to show the draw's proof. */
(function () {
  "use strict";

  if (!window.kocApi) { return; }
  document.querySelectorAll(".draw-lottery").forEach(function (button) {
    button.addEventListener("click", function () {
      button.disabled = true;
      window.kocApi("POST", button.dataset.url).then(function (answer) {
        if (answer.ok) {
          window.location.reload();
        } else {
          button.parentNode.querySelector(".draw-result").textContent =
            button.dataset.msgFailed + " " + window.kocApiErrors(answer.body).join("; ");
          button.disabled = false;
        }
      });
    });
  });
}());

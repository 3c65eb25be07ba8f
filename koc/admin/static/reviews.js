/* The review queue's keyboard, bulk decisions and re-opening.
 *
 * Keys (not while typing in a field): j / k move to the next / previous submission, x selects
 * it, a approves it with the rating its form shows, r puts the cursor in its reject reason.
 * Every decision goes through /api/v1 with the session and the X-CSRFToken header: one
 * submission's approve / reject (POST /submissions/{id}/review; the decided card leaves the
 * list and the cursor moves on), bulk approve / reject (POST /submissions/bulk-review) and
 * re-open (POST /submissions/{id}/reopen), after which the page reloads to show what is left;
 * an account's follower check (POST /social-accounts/{id}/followers) and the decision on figures
 * reported after approval (POST /submissions/{id}/metrics/{snapshot}/decision), after which the
 * page reloads to show the confirmed count, or the submission gone from the held list.
 */
(function () {
  "use strict";

  var cards = Array.prototype.slice.call(document.querySelectorAll(".submission"));
  var current = -1;

  function select(index) {
    if (!cards.length) { return; }
    index = Math.max(0, Math.min(cards.length - 1, index));
    if (current >= 0 && cards[current]) { cards[current].classList.remove("current"); }
    current = index;
    var card = cards[current];
    card.classList.add("current");
    card.focus({ preventScroll: true });
    card.scrollIntoView({ block: "nearest" });
  }

  function typing(target) {
    var tag = target && target.tagName;
    return tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT" || (target && target.isContentEditable);
  }

  document.addEventListener("keydown", function (event) {
    if (event.altKey || event.ctrlKey || event.metaKey || typing(event.target)) { return; }
    var card = cards[current];
    if (event.key === "j") {
      select(current + 1);
    } else if (event.key === "k") {
      select(current < 0 ? 0 : current - 1);
    } else if (event.key === "x" && card) {
      var box = card.querySelector(".select-submission");
      if (box) { box.checked = !box.checked; updateCount(); }
    } else if (event.key === "a" && card) {
      var approve = card.querySelector(".approve-form");
      if (approve) {
        var url = approve.querySelector('input[name="post_url"]');
        if (url && !url.value) { url.focus(); } else { approve.requestSubmit(); }
      }
    } else if (event.key === "r" && card) {
      var reason = card.querySelector('.reject-form textarea[name="reason"]');
      if (reason) { reason.focus(); }
    } else {
      return;
    }
    event.preventDefault();
  });

  cards.forEach(function (card, index) {
    card.addEventListener("click", function () {
      if (current !== index) {
        if (current >= 0 && cards[current]) { cards[current].classList.remove("current"); }
        current = index;
        card.classList.add("current");
      }
    });
  });

  // --- one submission's decision ------------------------------------------------------------
  var status = document.getElementById("review-status");

  function decided(form, body) {
    var card = form.closest(".submission");
    var index = cards.indexOf(card);
    if (status) {
      status.textContent = form.dataset.msgDone.replace("{rating}", String(body.rating));
      status.hidden = false;
    }
    cards.splice(index, 1);
    card.remove();
    updateCount();
    if (!cards.length) { window.location.reload(); return; }
    current = -1;
    select(Math.min(index, cards.length - 1));
  }

  function decide(form, body) {
    var result = form.closest(".actions").querySelector(".review-result");
    result.textContent = "";
    window.kocApi("POST", form.dataset.url, body).then(function (answer) {
      if (answer.ok) {
        decided(form, body);
      } else {
        result.textContent = form.dataset.msgFailed + " " + window.kocApiErrors(answer.body).join("; ");
      }
    });
  }

  document.querySelectorAll(".approve-form").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var body = { decision: "approve", rating: Number(form.querySelector('select[name="rating"]').value) };
      var url = form.querySelector('input[name="post_url"]');
      if (url) { body.post_url = url.value.trim() || null; }
      decide(form, body);
    });
  });

  document.querySelectorAll(".reject-form").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var code = form.querySelector('input[name="reason_code"]:checked');
      var note = form.querySelector('textarea[name="reason"]').value.trim();
      decide(form, { decision: "reject", reason: code ? code.value : "other", note: note || null });
    });
  });

  // Enter in a reject reason submits its form (the textarea would otherwise add a line).
  document.querySelectorAll('.reject-form textarea[name="reason"]').forEach(function (area) {
    area.addEventListener("keydown", function (event) {
      if (event.key === "Enter" && !event.shiftKey) {
        event.preventDefault();
        area.form.requestSubmit();
      }
    });
  });

  // --- bulk -----------------------------------------------------------------------------------
  var bulk = document.getElementById("bulk");
  // Read each time: a card decided on its own has left the page.
  function boxes() {
    return Array.prototype.slice.call(document.querySelectorAll(".select-submission"));
  }

  function selectedIds() {
    return boxes().filter(function (b) { return b.checked; }).map(function (b) { return Number(b.value); });
  }

  function updateCount() {
    var count = document.getElementById("bulk-count");
    if (count && bulk) { count.textContent = selectedIds().length + " " + bulk.dataset.msgSelected; }
  }

  if (bulk && window.kocApi) {
    var result = document.getElementById("bulk-result");
    boxes().forEach(function (b) { b.addEventListener("change", updateCount); });
    document.getElementById("select-all").addEventListener("change", function (event) {
      boxes().forEach(function (b) { b.checked = event.target.checked; });
      updateCount();
    });

    var send = function (body) {
      var ids = selectedIds();
      if (!ids.length) { result.textContent = bulk.dataset.msgNone; return; }
      body.ids = ids.slice(0, Number(bulk.dataset.max));
      window.kocApi("POST", "/api/v1/submissions/bulk-review", body).then(function (answer) {
        if (answer.ok) {
          result.textContent = bulk.dataset.msgDone;
          window.location.reload();
        } else {
          result.textContent = bulk.dataset.msgFailed + " " + window.kocApiErrors(answer.body).join("; ");
        }
      });
    };
    document.getElementById("bulk-approve").addEventListener("click", function () {
      send({ decision: "approve", rating: Number(document.getElementById("bulk-rating").value) });
    });
    document.getElementById("bulk-reject").addEventListener("click", function () {
      var note = document.getElementById("bulk-note").value.trim();
      send({ decision: "reject", reason: document.getElementById("bulk-reason").value,
             note: note || null });
    });
  }

  // --- re-open --------------------------------------------------------------------------------
  document.querySelectorAll(".reopen-form").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var note = form.querySelector('input[name="note"]').value.trim();
      window.kocApi("POST", form.dataset.url, { note: note }).then(function (answer) {
        if (answer.ok) {
          window.location.reload();
        } else {
          form.querySelector(".reopen-result").textContent =
            form.dataset.msgFailed + " " + window.kocApiErrors(answer.body).join("; ");
        }
      });
    });
  });

  // --- followers and held figures: written, then the page shows the stored state ------------
  function writeThenReload(form, resultClass, body) {
    var result = form.querySelector(resultClass);
    result.textContent = "";
    window.kocApi("POST", form.dataset.url, body).then(function (answer) {
      if (answer.ok) {
        window.location.reload();
      } else {
        result.textContent = form.dataset.msgFailed + " " + window.kocApiErrors(answer.body).join("; ");
      }
    });
  }

  document.querySelectorAll(".followers-form").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var note = form.querySelector('textarea[name="note"]').value.trim();
      writeThenReload(form, ".followers-result", {
        followers: Number(form.querySelector('input[name="followers"]').value),
        submission_id: Number(form.dataset.submission),
        note: note || null,
      });
    });
  });

  document.querySelectorAll(".metrics-form").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var note = form.querySelector('textarea[name="note"]').value.trim();
      var decision = event.submitter ? event.submitter.value : "confirm";
      writeThenReload(form, ".metrics-result", { decision: decision, note: note || null });
    });
  });
}());

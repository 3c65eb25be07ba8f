// The candidate rules form on /admin/candidates. No inline script: loaded from this file only.
// The form's fields become the rules JSON (the shape PUT /api/v1/candidates/rules takes);
// "Preview" asks POST /api/v1/candidates/rules/preview how the top of the list would change
// (nothing saved); "Save" puts a new version (a job then rescores every customer) and reloads
// the page, which says so. Both go through /api/v1 with the staff session (api.js).
(function () {
  "use strict";

  var form = document.getElementById("rules-form");
  if (!form) {
    return;
  }
  var status = document.getElementById("rules-status");
  var errors = document.getElementById("rules-errors");
  var table = document.getElementById("rules-preview-table");
  var left = document.getElementById("rules-left");

  function message(name) {
    return form.getAttribute("data-msg-" + name) || name;
  }

  function value(name) {
    return form.elements[name].value;
  }

  function number(name) {
    return value(name) === "" ? null : Number(value(name));
  }

  function list(name) {
    return value(name).split(/[,，]/).map(function (item) {
      return item.trim();
    }).filter(function (item) {
      return item.length > 0;
    });
  }

  function rules() {
    return {
      weights: {
        orders_count: number("w-orders_count"), spend_yuan: number("w-spend_yuan"),
        shares_count: number("w-shares_count"),
        community_posts_count: number("w-community_posts_count")
      },
      recency: { weight: number("recency-weight"),
                 half_life_days: number("recency-half_life_days") },
      required: { city: list("required-city"), store_code: list("required-store_code"),
                  tags: list("required-tags") },
      excluded: { city: list("excluded-city"), store_code: list("excluded-store_code"),
                  tags: list("excluded-tags") },
      exclusions: { members: true, opted_out_tags: list("exclusions-opted_out_tags"),
                    staff_tags: list("exclusions-staff_tags") }
    };
  }

  function flatten(messages, prefix, out) {
    Object.keys(messages || {}).forEach(function (key) {
      var item = messages[key];
      var path = prefix ? prefix + "." + key : key;
      if (Array.isArray(item)) {
        out.push(path + ": " + item.join("; "));
      } else if (item && typeof item === "object") {
        flatten(item, path, out);
      }
    });
    return out;
  }

  function showErrors(body) {
    while (errors.firstChild) {
      errors.removeChild(errors.firstChild);
    }
    var lines = flatten(((body.errors || {}).json || {}).rules || {}, "", []);
    if (!lines.length && body.message) {
      lines.push(body.message);
    }
    lines.forEach(function (line) {
      var li = document.createElement("li");
      li.className = "field-error";
      li.textContent = line;
      errors.appendChild(li);
    });
  }

  function showPreview(result) {
    var body = table.querySelector("tbody");
    while (body.firstChild) {
      body.removeChild(body.firstChild);
    }
    result.proposed.forEach(function (row) {
      var tr = document.createElement("tr");
      tr.setAttribute("data-external-id", row.external_id);
      var before = row.previous_rank === null ? message("new") : "#" + row.previous_rank;
      [String(row.rank), (row.display_name || row.external_id) + " · " + row.external_id,
       row.score.toFixed(2), before].forEach(function (text) {
        var td = document.createElement("td");
        td.textContent = text;
        tr.appendChild(td);
      });
      body.appendChild(tr);
    });
    table.hidden = false;
    left.textContent = result.left.length
      ? left.getAttribute("data-msg-left").split("{ids}").join(result.left.join(", ")) : "";
    status.textContent = result.proposed.length ? "" : message("none");
  }

  document.getElementById("rules-preview").addEventListener("click", function () {
    status.textContent = message("loading");
    window.kocApi("POST", "/api/v1/candidates/rules/preview", { rules: rules(), top: 20 })
      .then(function (answer) {
        showErrors(answer.ok ? {} : answer.body);
        if (answer.ok) {
          showPreview(answer.body);
        } else {
          status.textContent = "";
        }
      });
  });

  document.getElementById("rules-save").addEventListener("click", function () {
    status.textContent = message("saving");
    window.kocApi("PUT", "/api/v1/candidates/rules", { rules: rules() }).then(function (answer) {
      showErrors(answer.ok ? {} : answer.body);
      if (answer.ok) {
        // The page names the version saved and the job rescoring under it.
        var shown = new URLSearchParams(window.location.search);
        shown.set("rules_saved", answer.body.version);
        shown.set("rescore_job", answer.body.job_id);
        window.location.search = shown.toString();
      } else {
        status.textContent = "";
      }
    });
  });
}());

// The candidate rules form on /admin/candidates. No inline script: loaded from this file only.
// The form's fields become the rules JSON (the shape PUT /api/v1/candidates/rules takes);
// "Preview" asks how the top of the list would change (nothing saved); "Save" saves a new
// version (a job then rescores every customer) and reloads the page.
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

  function post(url, body) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "Accept": "application/json",
                 "X-CSRFToken": form.getAttribute("data-csrf-token") },
      body: JSON.stringify(body)
    }).then(function (response) {
      return response.json().catch(function () {
        return { message: "HTTP " + response.status };
      }).then(function (data) {
        return { ok: response.ok, body: data };
      });
    });
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
    post(form.getAttribute("data-preview-url"), { rules: rules(), top: 20 }).then(function (answer) {
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
    post(form.getAttribute("data-save-url"), { rules: rules() }).then(function (answer) {
      showErrors(answer.ok ? {} : answer.body);
      if (answer.ok) {
        window.location.reload();
      } else {
        status.textContent = "";
      }
    });
  });
}());

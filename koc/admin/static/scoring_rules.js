/* The scoring rules as a form (/admin/scoring), the JSON (advanced) view kept in step, a live
 * worked breakdown of a sample post (POST /api/v1/scoring/rules/preview), save
 * (PUT /api/v1/scoring/rules) and the version history (rules_history.js). */
(function () {
  "use strict";

  var DELAY_MS = 400;
  var editor = document.getElementById("scoring-editor");
  var textarea = document.getElementById("rules");
  if (!editor || !textarea) { return; }
  var meta = JSON.parse(document.getElementById("scoring-meta").textContent);
  var inputs = Array.prototype.slice.call(document.querySelectorAll("[data-path]"));
  var rules = JSON.parse(textarea.value).rules;
  var timer = null;
  var latest = 0;

  function setAt(target, path, value) {
    var parts = path.split(".");
    var node = target;
    parts.slice(0, -1).forEach(function (part) {
      if (!node[part] || typeof node[part] !== "object") { node[part] = {}; }
      node = node[part];
    });
    node[parts[parts.length - 1]] = value;
  }

  function getAt(source, path) {
    return path.split(".").reduce(function (node, part) {
      return node && typeof node === "object" ? node[part] : undefined;
    }, source);
  }

  function valueOf(input) {
    if (input.dataset.kind === "bool" || input.type === "checkbox") { return input.checked; }
    var text = input.value.trim();
    if (text === "") { return input.dataset.kind === "number?" ? null : text; }
    var value = Number(text);
    return isNaN(value) ? text : value;
  }

  function fromForm() {
    var next = JSON.parse(JSON.stringify(rules));
    inputs.forEach(function (input) { setAt(next, input.dataset.path, valueOf(input)); });
    rules = next;
    textarea.value = JSON.stringify({ rules: rules }, null, 2);
    schedule();
  }

  function fromText() {
    var parsed;
    try { parsed = JSON.parse(textarea.value); } catch (error) {
      showErrors([editor.dataset.msgNotJson + " " + error.message]);
      return;
    }
    if (!parsed || typeof parsed.rules !== "object") { return; }
    rules = parsed.rules;
    inputs.forEach(function (input) {
      var value = getAt(rules, input.dataset.path);
      if (input.type === "checkbox") { input.checked = Boolean(value); }
      else { input.value = value === null || value === undefined ? "" : String(value); }
    });
    schedule();
  }

  // --- preview --------------------------------------------------------------------------------
  var panel = document.getElementById("scoring-preview");
  var errors = document.getElementById("preview-errors");

  function showErrors(lines) {
    if (!errors) { return; }
    while (errors.firstChild) { errors.removeChild(errors.firstChild); }
    lines.forEach(function (line) {
      var li = document.createElement("li");
      li.className = "field-error";
      li.textContent = line;
      errors.appendChild(li);
    });
  }

  function sample() {
    var out = { metrics: {} };
    document.querySelectorAll("[data-sample]").forEach(function (input) {
      var path = input.dataset.sample;
      var value = input.type === "checkbox" ? input.checked
        : input.value.trim() === "" ? null : Number(input.value);
      setAt(out, path, value);
    });
    return out;
  }

  function showResult(body) {
    showErrors([]);
    document.getElementById("preview-score").textContent = String(body.score);
    var tbody = document.querySelector("#preview-breakdown tbody");
    while (tbody.firstChild) { tbody.removeChild(tbody.firstChild); }
    var parts = body.score_breakdown.parts;
    var names = {};
    var order = meta.parts.map(function (pair) { names[pair[0]] = pair[1]; return pair[0]; });
    Object.keys(parts).forEach(function (key) { if (order.indexOf(key) < 0) { order.push(key); } });
    order.filter(function (key) { return key in parts; }).forEach(function (key) {
      var row = document.createElement("tr");
      var name = document.createElement("td");
      name.textContent = names[key] || key;
      var value = document.createElement("td");
      value.className = "num";
      value.textContent = String(parts[key]);
      row.appendChild(name);
      row.appendChild(value);
      row.dataset.part = key;
      tbody.appendChild(row);
    });
    var used = body.score_breakdown.inputs;
    document.getElementById("preview-inputs").textContent =
      meta.labels.audience + " " + used.audience_factor + " · " + meta.labels.followers + " " +
      (used.followers === null ? "–" : used.followers) + " · " + meta.labels.multiplier + " " +
      used.rating_multiplier;
  }

  function preview() {
    if (!panel) { return; }
    var ticket = ++latest;
    window.kocApi("POST", "/api/v1/scoring/rules/preview", { rules: rules, sample: sample() })
      .then(function (answer) {
        if (ticket !== latest) { return; }
        if (answer.ok) { showResult(answer.body); }
        else if (answer.status === 422) {
          showErrors([panel.dataset.msgInvalid].concat(window.kocApiErrors(answer.body)));
        } else { showErrors([panel.dataset.msgFailed]); }
      });
  }

  function schedule() {
    if (!panel) { return; }
    clearTimeout(timer);
    timer = setTimeout(preview, DELAY_MS);
  }

  var save = document.getElementById("scoring-save");
  if (save) {
    inputs.forEach(function (input) {
      input.addEventListener("input", fromForm);
      input.addEventListener("change", fromForm);
    });
    textarea.addEventListener("input", fromText);
    document.querySelectorAll("[data-sample]").forEach(function (input) {
      input.addEventListener("input", schedule);
      input.addEventListener("change", schedule);
    });
    save.addEventListener("click", function () {
      var result = document.getElementById("save-result");
      save.disabled = true;
      window.kocApi("PUT", "/api/v1/scoring/rules", { rules: rules }).then(function (answer) {
        if (answer.ok) {
          result.textContent = editor.dataset.msgSaved;
          window.location.reload();
        } else {
          result.textContent = editor.dataset.msgFailed + " " + window.kocApiErrors(answer.body).join("; ");
          save.disabled = false;
        }
      });
    });
    schedule();
  }

  if (window.kocRulesHistory) {
    window.kocRulesHistory({
      current: function () { return rules; },
      pick: function (row) { return row.rules; },
      restore: function (row) { return window.kocApi("PUT", "/api/v1/scoring/rules", { rules: row.rules }); },
    });
  }
}());

/* The tier rules as forms (/admin/tiers): tiers, their conditions with a metric chooser,
 * windows, thresholds, all / any, the low-water mark and grace, and weak posts.
 *
 * The form and the JSON text area (#rules, the advanced view, also the form the page posts
 * without JavaScript) hold the same rules: editing either updates the other. While an admin
 * edits, the rules are sent (debounced) to POST /api/v1/tiers/rules/preview and the counts and
 * a sample of members moving are shown; Save is PUT /api/v1/tiers/rules. Both with the session
 * and the X-CSRFToken header (api.js). Labels come from data-msg-* attributes (translated).
 */
(function () {
  "use strict";

  var DELAY_MS = 400;
  var editor = document.getElementById("rules-editor");
  var builder = document.getElementById("rules-builder");
  var textarea = document.getElementById("rules");
  var metaNode = document.getElementById("rules-meta");
  if (!editor || !builder || !textarea || !metaNode) { return; }
  var meta = JSON.parse(metaNode.textContent);
  var readonly = builder.dataset.readonly === "true";
  var msg = function (name) { return editor.dataset["msg" + name] || ""; };
  var tiers = [];
  var timer = null;
  var latest = 0;

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (key) {
      if (key === "text") { node.textContent = attrs[key]; }
      else if (key === "className") { node.className = attrs[key]; }
      else { node.setAttribute(key, attrs[key]); }
    });
    (children || []).forEach(function (child) { if (child) { node.appendChild(child); } });
    if (readonly && (tag === "input" || tag === "select" || tag === "button")) { node.disabled = true; }
    return node;
  }

  function field(label, input, className) {
    return el("label", { className: className || "" }, [document.createTextNode(label), input]);
  }

  function numberInput(value, name, attrs) {
    var input = el("input", Object.assign({ type: "number", step: "any", "data-field": name }, attrs || {}));
    if (value !== undefined && value !== null) { input.value = String(value); }
    return input;
  }

  function metricSelect(value) {
    var select = el("select", { "data-field": "metric" });
    meta.metrics.forEach(function (pair) {
      var option = el("option", { value: pair[0], text: pair[1] });
      if (pair[0] === value) { option.selected = true; }
      select.appendChild(option);
    });
    return select;
  }

  function conditionRow(condition) {
    var row = el("div", { className: "condition" }, [
      field(msg("Metric"), metricSelect(condition.metric)),
      field(msg("Min"), numberInput(condition.min, "min", { min: "0" })),
      field(msg("Window"), numberInput(condition.window_days, "window_days", { min: "1", step: "1" })),
    ]);
    if (!readonly) {
      var remove = el("button", { type: "button", className: "link remove-condition", text: msg("Remove") });
      row.appendChild(remove);
    }
    return row;
  }

  function tierCard(tier, index) {
    var combine = tier.rules && tier.rules.all ? "all" : "any";
    var conditions = (tier.rules && tier.rules[combine]) || [];
    var demotion = tier.demotion || {};
    var defaults = meta.default_demotion;
    var combineSelect = el("select", { "data-field": "combine" }, [
      el("option", { value: "all", text: msg("All") }),
      el("option", { value: "any", text: msg("Any") }),
    ]);
    combineSelect.value = combine;
    var list = el("div", { className: "conditions-list" }, conditions.map(conditionRow));
    var weak = tier.weak_posts || null;
    var weakOn = el("input", { type: "checkbox", "data-field": "weak_on" });
    weakOn.checked = Boolean(weak);
    var card = el("fieldset", { className: "tier-card", "data-index": String(index) }, [
      el("legend", { text: msg("Tier") + " " + (index + 1) + (tier.name ? " · " + (meta.tier_names[tier.key] || tier.name) : "") }),
      el("div", { className: "tier-head" }, [
        field(msg("Key"), el("input", { type: "text", "data-field": "key", value: tier.key || "", maxlength: "32", pattern: "[a-z][a-z0-9_]*" })),
        field(msg("Name"), el("input", { type: "text", "data-field": "name", value: tier.name || "", maxlength: "100" })),
        field(msg("Rank"), numberInput(tier.rank, "rank", { min: "1", max: "100", step: "1" })),
        field(msg("Combine"), combineSelect),
      ]),
      list,
      readonly ? null : el("button", { type: "button", className: "secondary add-condition", text: msg("AddCondition") }),
      el("h3", { text: msg("Demotion") }),
      el("div", { className: "tier-demotion" }, [
        field(msg("LowWater"), numberInput(demotion.low_water, "low_water", { min: "0", max: "1", step: "0.05", placeholder: String(defaults.low_water) })),
        field(msg("MinDays"), numberInput(demotion.min_days_at_tier, "min_days_at_tier", { min: "0", placeholder: String(defaults.min_days_at_tier) })),
        field(msg("DaysBelow"), numberInput(demotion.days_below, "days_below", { min: "0", placeholder: String(defaults.days_below) })),
      ]),
      el("div", { className: "tier-weak" }, [
        field(msg("Weak"), weakOn, "check"),
        field(msg("WeakCount"), numberInput(weak ? weak.count : null, "weak_count", { min: "1", max: "50", step: "1" })),
        field(msg("WeakBelow"), numberInput(weak ? weak.below : null, "weak_below", { min: "1", step: "1" })),
      ]),
      readonly ? null : el("button", { type: "button", className: "link remove-tier", text: msg("RemoveTier") }),
    ]);
    return card;
  }

  function render() {
    while (builder.firstChild) { builder.removeChild(builder.firstChild); }
    tiers.forEach(function (tier, index) { builder.appendChild(tierCard(tier, index)); });
  }

  function number(input) {
    var text = input.value.trim();
    if (text === "") { return null; }
    var value = Number(text);
    return isNaN(value) ? text : value;
  }

  // The form as the API's shape; empty optional fields are left out, not sent as zero.
  function read() {
    return Array.prototype.map.call(builder.querySelectorAll(".tier-card"), function (card) {
      var get = function (name) { return card.querySelector('[data-field="' + name + '"]'); };
      var combine = get("combine").value;
      var conditions = Array.prototype.map.call(card.querySelectorAll(".condition"), function (row) {
        var condition = { metric: row.querySelector('[data-field="metric"]').value,
                          min: number(row.querySelector('[data-field="min"]')) };
        var windowDays = number(row.querySelector('[data-field="window_days"]'));
        if (windowDays !== null) { condition.window_days = windowDays; }
        return condition;
      });
      var tier = { key: get("key").value.trim(), name: get("name").value.trim(),
                   rank: number(get("rank")), rules: {} };
      tier.rules[combine] = conditions;
      var demotion = {};
      ["low_water", "min_days_at_tier", "days_below"].forEach(function (name) {
        var value = number(get(name));
        if (value !== null) { demotion[name] = value; }
      });
      if (Object.keys(demotion).length) { tier.demotion = demotion; }
      if (get("weak_on").checked) {
        tier.weak_posts = { count: number(get("weak_count")), below: number(get("weak_below")) };
      }
      return tier;
    });
  }

  function fromForm() {
    tiers = read();
    textarea.value = JSON.stringify({ tiers: tiers }, null, 2);
    schedule();
  }

  function fromText() {
    var parsed;
    try {
      parsed = JSON.parse(textarea.value);
    } catch (error) {
      showErrors([msg("NotJson") + " " + error.message]);
      return;
    }
    var list = Array.isArray(parsed) ? parsed : parsed && parsed.tiers;
    if (!Array.isArray(list)) { return; }
    tiers = list;
    render();
    schedule();
  }

  if (!readonly) {
    builder.addEventListener("input", fromForm);
    builder.addEventListener("change", fromForm);
    builder.addEventListener("click", function (event) {
      var target = event.target;
      if (target.classList.contains("add-condition")) {
        target.previousSibling.appendChild(conditionRow({ metric: meta.metrics[0][0], min: 1 }));
      } else if (target.classList.contains("remove-condition")) {
        target.closest(".condition").remove();
      } else if (target.classList.contains("remove-tier")) {
        target.closest(".tier-card").remove();
      } else {
        return;
      }
      fromForm();
      render();
    });
    textarea.addEventListener("input", fromText);
    document.getElementById("add-tier").addEventListener("click", function () {
      var rank = tiers.reduce(function (top, t) { return Math.max(top, Number(t.rank) || 0); }, 0) + 1;
      tiers.push({ key: "tier_" + rank, name: "", rank: rank,
                   rules: { any: [{ metric: meta.metrics[0][0], min: 1 }] } });
      textarea.value = JSON.stringify({ tiers: tiers }, null, 2);
      render();
      schedule();
    });
    document.getElementById("rules-save").addEventListener("click", function (event) {
      var button = event.target;
      var result = document.getElementById("save-result");
      button.disabled = true;
      window.kocApi("PUT", "/api/v1/tiers/rules", { tiers: read() }).then(function (answer) {
        if (answer.ok) {
          result.textContent = msg("Saved");
          window.location.reload();
        } else {
          result.textContent = msg("Failed") + " " + window.kocApiErrors(answer.body).join("; ");
          button.disabled = false;
        }
      });
    });
  }

  // --- live preview ---------------------------------------------------------------------------
  var panel = document.getElementById("preview");
  var status = document.getElementById("preview-status");
  var errors = document.getElementById("preview-errors");
  var sample = document.getElementById("preview-sample");
  var counts = panel && {
    promotions: document.getElementById("preview-promotions"),
    demotions: document.getElementById("preview-demotions"),
    entering_grace: document.getElementById("preview-grace"),
  };
  var pmsg = function (name) { return panel ? panel.dataset["msg" + name] || "" : ""; };

  function showErrors(lines) {
    if (!errors) { return; }
    while (errors.firstChild) { errors.removeChild(errors.firstChild); }
    lines.forEach(function (line) {
      errors.appendChild(el("li", { className: "field-error", text: line }));
    });
    if (lines.length && status) { status.textContent = pmsg("Invalid"); }
  }

  function tierName(key) {
    if (!key) { return pmsg("NoTier"); }
    var found = tiers.filter(function (t) { return t.key === key; })[0];
    return meta.tier_names[key] || (found && found.name) || key;
  }

  function showResult(result) {
    showErrors([]);
    status.textContent = pmsg("Ready");
    Object.keys(counts).forEach(function (key) { counts[key].textContent = String(result[key]); });
    while (sample.firstChild) { sample.removeChild(sample.firstChild); }
    if (!result.changes.length) {
      sample.appendChild(el("tr", {}, [el("td", { colspan: "4", className: "muted", text: pmsg("None") })]));
    }
    result.changes.slice(0, 20).forEach(function (change) {
      var link = el("a", { href: panel.dataset.memberUrl + change.member_id, text: "#" + change.member_id });
      sample.appendChild(el("tr", {}, [el("td", {}, [link]), el("td", { text: tierName(change.from) }),
        el("td", { text: tierName(change.to) }), el("td", { text: change.reason })]));
    });
  }

  function preview() {
    if (!panel) { return; }
    var ticket = ++latest;
    panel.setAttribute("aria-busy", "true");
    status.textContent = pmsg("Loading");
    window.kocApi("POST", "/api/v1/tiers/rules/preview", { tiers: tiers }).then(function (answer) {
      if (ticket !== latest) { return; }
      panel.removeAttribute("aria-busy");
      if (answer.ok) { showResult(answer.body); }
      else if (answer.status === 422) { showErrors(window.kocApiErrors(answer.body)); }
      else { status.textContent = pmsg("Failed"); }
    }, function () {
      panel.removeAttribute("aria-busy");
      status.textContent = pmsg("Failed");
    });
  }

  function schedule() {
    if (readonly || !panel) { return; }
    clearTimeout(timer);
    timer = setTimeout(preview, DELAY_MS);
  }

  // --- start ----------------------------------------------------------------------------------
  try {
    var initial = JSON.parse(textarea.value);
    tiers = Array.isArray(initial) ? initial : initial.tiers || [];
  } catch (error) {
    tiers = [];
  }
  render();

  if (window.kocRulesHistory) {
    window.kocRulesHistory({
      current: function () { return { tiers: tiers }; },
      pick: function (row) { return { tiers: row.tiers }; },
      restore: function (row) { return window.kocApi("PUT", "/api/v1/tiers/rules", { tiers: row.tiers }); },
    });
  }
}());

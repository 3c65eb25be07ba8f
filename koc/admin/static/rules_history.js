/* Shared by the rules pages (tier rules, scoring rules): stable JSON, a line diff, and the
 * version history's "Differences" and "Restore this version" buttons.
 *
 * kocRulesHistory({current: fn() -> object being edited, pick: fn(versionRow) -> object,
 *                  restore: fn(versionRow) -> Promise of an API answer}) wires #history:
 * the versions come from its data-list-url (GET /api/v1/.../versions), read once.
 */
(function () {
  "use strict";

  function stable(value) {
    if (Array.isArray(value)) { return value.map(stable); }
    if (value && typeof value === "object") {
      var out = {};
      Object.keys(value).sort().forEach(function (key) { out[key] = stable(value[key]); });
      return out;
    }
    return value;
  }

  function stableJson(value) {
    return JSON.stringify(stable(value), null, 2);
  }

  // Longest common subsequence over lines: [{op: " "|"-"|"+", text}].
  function lineDiff(before, after) {
    var a = before.split("\n"), b = after.split("\n");
    var n = a.length, m = b.length, i, j;
    var table = [];
    for (i = 0; i <= n; i++) { table.push(new Array(m + 1).fill(0)); }
    for (i = n - 1; i >= 0; i--) {
      for (j = m - 1; j >= 0; j--) {
        table[i][j] = a[i] === b[j] ? table[i + 1][j + 1] + 1
          : Math.max(table[i + 1][j], table[i][j + 1]);
      }
    }
    var out = [];
    i = 0; j = 0;
    while (i < n && j < m) {
      if (a[i] === b[j]) { out.push({ op: " ", text: a[i] }); i++; j++; }
      else if (table[i + 1][j] >= table[i][j + 1]) { out.push({ op: "-", text: a[i] }); i++; }
      else { out.push({ op: "+", text: b[j] }); j++; }
    }
    for (; i < n; i++) { out.push({ op: "-", text: a[i] }); }
    for (; j < m; j++) { out.push({ op: "+", text: b[j] }); }
    return out;
  }

  function kocRulesHistory(options) {
    var section = document.getElementById("history");
    if (!section || !window.kocApi) { return; }
    var diff = document.getElementById("rules-diff");
    var title = document.getElementById("diff-title");
    var result = document.getElementById("history-result");
    var loaded = null;

    function versions() {
      if (loaded) { return Promise.resolve(loaded); }
      return window.kocApi("GET", section.dataset.listUrl).then(function (answer) {
        if (!answer.ok) { throw new Error(window.kocApiErrors(answer.body).join("; ")); }
        loaded = answer.body;
        return loaded;
      });
    }

    function find(version) {
      return versions().then(function (rows) {
        return rows.filter(function (row) { return row.version === version; })[0];
      });
    }

    function showDiff(row) {
      var lines = lineDiff(stableJson(options.pick(row)), stableJson(options.current()));
      while (diff.firstChild) { diff.removeChild(diff.firstChild); }
      var changed = lines.filter(function (l) { return l.op !== " "; }).length;
      if (!changed) {
        diff.textContent = section.dataset.msgSame;
      }
      lines.forEach(function (line, index) {
        if (!changed) { return; }
        // Context: only lines within three of a change.
        var near = lines.slice(Math.max(0, index - 3), index + 4).some(function (l) { return l.op !== " "; });
        if (!near) { return; }
        var span = document.createElement("span");
        span.className = line.op === "+" ? "diff-add" : line.op === "-" ? "diff-del" : "diff-same";
        span.textContent = (line.op === " " ? "  " : line.op + " ") + line.text + "\n";
        diff.appendChild(span);
      });
      diff.hidden = false;
      title.hidden = false;
    }

    section.addEventListener("click", function (event) {
      var button = event.target.closest("button");
      var rowNode = event.target.closest("tr.version");
      if (!button || !rowNode) { return; }
      var version = Number(rowNode.dataset.version);
      find(version).then(function (row) {
        if (!row) { return; }
        if (button.classList.contains("show-diff")) {
          showDiff(row);
        } else if (button.classList.contains("restore")) {
          button.disabled = true;
          options.restore(row).then(function (answer) {
            if (answer.ok) {
              result.textContent = section.dataset.msgRestored;
              window.location.reload();
            } else {
              result.textContent = section.dataset.msgFailed + " " + window.kocApiErrors(answer.body).join("; ");
              button.disabled = false;
            }
          });
        }
      }).catch(function (error) { result.textContent = String(error.message || error); });
    });
  }

  window.kocStableJson = stableJson;
  window.kocLineDiff = lineDiff;
  window.kocRulesHistory = kocRulesHistory;
}());

// The airsearch page: plain DOM code, no build step, no external fetches. Every text from the
// server is inserted with textContent (never as HTML).
"use strict";

const $ = (id) => document.getElementById(id);
const state = { info: null, lastQuery: null, lastResults: null };

function token() { return sessionStorage.getItem("airsearch-token") || ""; }

async function api(path, body, raw) {
  const headers = { "Content-Type": "application/json" };
  if (token()) headers.Authorization = "Bearer " + token();
  const res = await fetch(path, body === undefined ? { headers } : { method: "POST", headers, body: JSON.stringify(body) });
  if (!res.ok) {
    let msg = res.status + " " + res.statusText;
    try { const e = (await res.json()).error; msg = (e.where ? e.where + ": " : "") + e.message; } catch (_) { /* not JSON */ }
    throw new Error(msg);
  }
  return raw ? res : res.json();
}

function status(text, isError) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "muted";
}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function option(select, value, label) {
  const o = el("option", "", label === undefined ? value : label);
  o.value = value;
  select.appendChild(o);
}

async function loadInfo() {
  // several loads can be in flight (page load, each token change): only the newest one renders, and it
  // keeps what the user already chose in the dropdowns
  const seq = (state.infoSeq = (state.infoSeq || 0) + 1);
  const health = await api("/api/health");
  if (seq !== state.infoSeq) return;
  $("token-box").hidden = !health.auth;
  if (health.auth && !token()) { status("this server needs a token"); $("table-info").textContent = "table " + health.table; return; }
  const info = await api("/api/info");
  if (seq !== state.infoSeq) return;
  const chosen = { mode: $("mode").value, gb: $("group-by").value, rerank: $("rerank").value, column: $("method-column").value };
  state.info = info;
  const t = info.table;
  $("table-info").textContent = `table ${t.name}: ${t.rows.toLocaleString()} rows, version ${t.version}, ${t.index.type} search`;
  const mode = $("mode"); mode.textContent = "";
  info.modes.forEach((m) => option(mode, m));
  const gb = $("group-by"); gb.textContent = ""; option(gb, "", "(none)");
  Object.keys(info.filterable_columns).filter((c) => c !== "id").forEach((c) => option(gb, c));
  const rerank = $("rerank"); rerank.textContent = ""; option(rerank, "", "(none)");
  info.rerank_methods.forEach((m) => option(rerank, m));
  // the table's method columns: searched with the query's method vector instead of AirRep (needs --lm)
  const column = $("method-column"); column.textContent = ""; option(column, "", "(AirRep)");
  const columns = info.lm ? info.method_columns : [];
  columns.forEach((c) => option(column, c.column, `${c.column} (${c.method}, ${c.dim}-d ${c.dtype})`));
  for (const [id, value] of [["mode", chosen.mode], ["group-by", chosen.gb], ["rerank", chosen.rerank], ["method-column", chosen.column]]) {
    if (value && [...$(id).options].some((o) => o.value === value)) $(id).value = value;
  }
  $("rerank-box").hidden = !info.rerank_methods.length;  // an empty dropdown is never shown
  $("column-box").hidden = !columns.length;
  $("k").max = info.limits.max_k;
  $("hint").textContent = info.hint; $("hint").hidden = false;
  status("ready");
}

function addFilter() {
  if (!state.info) return;
  const row = el("div", "filter");
  const col = el("select", "f-column");
  Object.keys(state.info.filterable_columns).forEach((c) => option(col, c));
  const op = el("select", "f-op");
  ["eq", "ne", "in", "gt", "gte", "lt", "lte"].forEach((o) => option(op, o));
  const val = el("input", "f-value"); val.placeholder = "value (in: a, b, c)";
  const del = el("button", "", "×"); del.type = "button"; del.onclick = () => row.remove();
  row.append(col, op, val, del);
  $("filters").appendChild(row);
}

function typed(kind, text) {
  if (kind === "int" || kind === "float") { const n = Number(text); return Number.isFinite(n) ? n : text; }
  if (kind === "bool") return text === "true";
  return text;
}

function filters() {
  return [...document.querySelectorAll(".filter")].map((row) => {
    const column = row.querySelector(".f-column").value, op = row.querySelector(".f-op").value;
    const kind = state.info.filterable_columns[column], text = row.querySelector(".f-value").value;
    const value = op === "in" ? text.split(",").map((s) => typed(kind, s.trim())) : typed(kind, text);
    return { column, op, value };
  });
}

function queryBody() {
  const body = {
    prompt: $("prompt").value, response: $("response").value, k: Number($("k").value) || 10,
    mode: $("mode").value, filters: filters(), opponents: $("opponents").checked, preview_chars: 160,
  };
  if ($("group-by").value) body.group_by = $("group-by").value;
  if ($("method-column").value) {  // a method column is searched by vector, without rerank
    body.method = $("method-column").value; body.mode = "vector";
  } else if ($("rerank").value) body.rerank = $("rerank").value;
  return body;
}

function kindLabel(kind) {
  const known = (state.info && state.info.score_kinds) || {};
  const [method, pre] = kind.split("+");
  const base = known[method] || method;
  return pre ? `${pre === "ekfac" ? "EK-FAC" : "K-FAC"} influence (${base})` : base;
}

function scoreText(score) {
  return Math.abs(score) >= 1e-3 || score === 0 ? score.toFixed(4) : score.toExponential(3);
}

function renderList(list, cands) {
  list.textContent = "";
  const top = Math.max(1e-12, ...cands.map((c) => Math.abs(c.score)));
  cands.forEach((c, i) => {
    const li = el("li", "result");
    li.dataset.id = c.id;
    li.dataset.score = String(c.score);
    const head = el("div", "head");
    const bar = el("div", "bar" + (c.score < 0 ? " negative" : ""));
    const fill = el("span"); fill.style.width = (100 * Math.abs(c.score) / top).toFixed(1) + "%";
    bar.appendChild(fill);
    const kind = el("span", "kind", c.score_kind); kind.title = kindLabel(c.score_kind);
    const score = el("span", "score", scoreText(c.score)); score.title = `${kindLabel(c.score_kind)}: ${c.score}`;
    head.append(el("span", "rank", String(i + 1)), bar, kind, score, el("span", "rid", c.id));
    const chips = el("div", "chips");
    Object.entries(c.metadata).forEach(([k, v]) => {
      const chip = el("span", "chip", `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`);
      chip.title = chip.textContent;
      chips.appendChild(chip);
    });
    if (chips.childElementCount) head.appendChild(chips);
    li.append(head, el("div", "preview", c.prompt), el("div", "preview", "→ " + c.response));
    li.onclick = () => openRow(c, li);
    list.appendChild(li);
  });
}

function renderGroups(res) {
  const box = $("groups"), chart = $("group-chart");
  chart.textContent = "";
  box.hidden = !res.groups;
  if (!res.groups) return;
  $("groups-column").textContent = res.group_by;
  const top = Math.max(1e-12, ...res.groups.map((g) => Math.abs(g.score)));
  res.groups.slice(0, 30).forEach((g) => {
    const row = el("div", "group");
    const bar = el("div", "bar" + (g.score < 0 ? " negative" : ""));
    const fill = el("span"); fill.style.width = (100 * Math.abs(g.score) / top).toFixed(1) + "%";
    bar.appendChild(fill);
    const name = el("span", "name", `${g.group} (${g.size})`); name.title = `${g.group}: ${g.size} rows`;
    const score = el("span", "score", scoreText(g.score)); score.title = `${kindLabel(g.score_kind || "airrep-group")}: ${g.score}`;
    row.append(name, bar, score);
    chart.appendChild(row);
  });
}

async function search(ev) {
  ev.preventDefault();
  status("searching…");
  try {
    const body = queryBody();
    const out = await api("/api/query", body);
    const res = out.results[0];
    state.lastQuery = body; state.lastResults = res;
    $("results-title").hidden = false;
    $("results-title").textContent = `Proponents, ranked by ${res.ranked_by}`;
    $("results-score").hidden = false;
    $("results-score").textContent = `score: ${res.score_kind}, ${res.score_label}; table version ${out.table_version}`;
    renderList($("results"), res.proponents);
    $("results-empty").hidden = res.proponents.length > 0;
    $("results-empty").textContent = body.filters.length
      ? `No rows match these filters (${body.filters.length} given): remove one or loosen it, then search again.`
      : "No rows found for this query.";
    $("opponents-title").hidden = !res.opponents;
    renderList($("opponent-results"), res.opponents || []);
    $("opponents-empty").hidden = !res.opponents || res.opponents.length > 0;
    renderGroups(res);
    $("download-results").disabled = false; $("download-selection").disabled = false;
    status(`${res.proponents.length} results`);
  } catch (e) { status(e.message, true); }
}

function tokenText(t) { return t.startsWith("##") ? t.slice(2) : (t.startsWith("▁") || t.startsWith("Ġ") ? " " + t.slice(1) : " " + t); }

function renderTokens(box, tokens) {
  box.textContent = "";
  const top = Math.max(1e-12, ...tokens.filter((t) => !t.special && t.part !== "template").map((t) => Math.abs(t.contribution)));
  tokens.forEach((t) => {
    const frame = t.special || t.part === "template";  // not the row's own text
    const span = el("span", "tok" + (frame ? " special" : ""), frame ? t.token : tokenText(t.token));
    span.title = `${t.token}${t.part ? " (" + t.part + ")" : ""}: ${t.contribution.toExponential(3)}`;
    if (!frame) {
      const a = Math.min(1, Math.abs(t.contribution) / top);
      span.classList.add(t.contribution >= 0 ? "pos" : "neg");
      span.style.backgroundColor = t.contribution >= 0 ? `rgba(30,142,90,${(0.08 + 0.7 * a).toFixed(3)})` : `rgba(192,57,43,${(0.08 + 0.7 * a).toFixed(3)})`;
    }
    span.dataset.contribution = String(t.contribution);
    box.appendChild(span);
  });
}

async function openRow(c, li) {
  document.querySelectorAll(".result.open").forEach((x) => x.classList.remove("open"));
  li.classList.add("open");
  status("explaining " + c.id + "…");
  try {
    const q = state.lastQuery;
    const body = { id: c.id, prompt: q.prompt, response: q.response };
    if (q.rerank) body.method = q.rerank;
    const [row, ex] = await Promise.all([api("/api/rows?id=" + encodeURIComponent(c.id)), api("/api/explain", body)]);
    $("detail").hidden = false;
    $("detail-id").textContent = row.id;
    $("detail-score").textContent = `AirRep dot product ${ex.airrep.score.toFixed(4)}`;
    // the list may rank by another score (BM25, RRF, a reranking method): say which, beside the AirRep one
    $("detail-list-score").hidden = c.score_kind === "airrep";
    $("detail-list-score").textContent = `listed with ${c.score_kind} ${scoreText(c.score)} (${kindLabel(c.score_kind)}); the token shares below split the AirRep dot product`;
    renderTokens($("row-tokens"), ex.airrep.row_tokens);
    renderTokens($("query-tokens"), ex.airrep.query_tokens);
    $("gradient-box").hidden = !ex.gradient;
    if (ex.gradient) {
      $("gradient-method").textContent = ex.gradient.method;
      $("gradient-score").textContent = `${kindLabel(ex.gradient.method)} ${ex.gradient.score.toExponential(3)}`;
      renderTokens($("gradient-tokens"), ex.gradient.tokens.map((t) => ({ ...t, special: false })));
    }
    $("detail-meta").textContent = JSON.stringify({ id: row.id, row_id: row.row_id, ...row.metadata }, null, 2);
    status("row " + c.id);
  } catch (e) { status(e.message, true); }
}

function saveBlob(blob, name) {
  const a = el("a"); a.href = URL.createObjectURL(blob); a.download = name;
  document.body.appendChild(a); a.click(); a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 1000);
}

function downloadResults() {
  const res = state.lastResults;
  if (!res) return;
  const rows = res.proponents.map((c, i) => JSON.stringify({ rank: i + 1, ...c }));
  saveBlob(new Blob([rows.join("\n") + "\n"], { type: "application/x-ndjson" }), "results.jsonl");
}

async function downloadSelection() {
  const q = state.lastQuery;
  if (!q) return;
  status("selecting…");
  try {
    const res = await api("/api/select", { targets: [{ prompt: q.prompt, response: q.response }], n: Number($("select-n").value) || 100, filters: q.filters }, true);
    saveBlob(await res.blob(), "selection.jsonl");
    status("selection downloaded");
  } catch (e) { status(e.message, true); }
}

$("query-form").addEventListener("submit", search);
$("add-filter").addEventListener("click", addFilter);
$("download-results").addEventListener("click", downloadResults);
$("download-selection").addEventListener("click", downloadSelection);
$("token").addEventListener("change", (e) => { sessionStorage.setItem("airsearch-token", e.target.value); loadInfo().catch((err) => status(err.message, true)); });
loadInfo().catch((e) => status(e.message, true));

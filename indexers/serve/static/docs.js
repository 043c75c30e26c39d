// The API docs, rendered from the server's own /openapi.json: no CDN, no external fetch, so they work
// offline. Every text is inserted with textContent.
"use strict";

const $ = (id) => document.getElementById(id);

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function resolve(spec, schema) {
  let s = schema || {};
  for (let i = 0; s.$ref && i < 20; i++) s = s.$ref.split("/").slice(1).reduce((o, k) => o[k], spec);
  return s;
}

function typeOf(spec, schema) {
  const s = resolve(spec, schema);
  if (schema && schema.$ref) return schema.$ref.split("/").pop();
  if (s.anyOf) return s.anyOf.map((x) => typeOf(spec, x)).join(" | ");
  if (s.type === "array") return typeOf(spec, s.items) + "[]";
  if (s.enum) return s.enum.map((v) => JSON.stringify(v)).join(" | ");
  return s.type || "object";
}

function fieldsTable(spec, schema) {
  const s = resolve(spec, schema);
  const props = s.properties || {};
  if (!Object.keys(props).length) return el("p", "muted", typeOf(spec, schema));
  const table = el("table", "fields");
  const head = el("tr");
  ["field", "type", "default", "description"].forEach((h) => head.appendChild(el("th", "", h)));
  table.appendChild(head);
  const required = new Set(s.required || []);
  Object.entries(props).forEach(([name, p]) => {
    const row = el("tr");
    const full = resolve(spec, p);
    row.append(
      el("td", "rid", name + (required.has(name) ? " *" : "")),
      el("td", "", typeOf(spec, p)),
      el("td", "", full.default === undefined ? "" : JSON.stringify(full.default)),
      el("td", "muted", full.description || p.description || full.title || ""),
    );
    table.appendChild(row);
  });
  return table;
}

function endpoint(spec, path, method, op) {
  const box = el("div", "endpoint");
  const title = el("h2");
  title.append(el("span", "chip", method.toUpperCase()), " ", el("code", "", path), " ", el("small", "muted", op.summary || ""));
  box.appendChild(title);
  if (op.description) box.appendChild(el("p", "", op.description));
  const params = op.parameters || [];
  if (params.length) {
    box.appendChild(el("h3", "", "Parameters"));
    const ul = el("ul");
    params.forEach((p) => ul.appendChild(el("li", "", `${p.name} (${p.in}, ${typeOf(spec, p.schema)})${p.required ? ", required" : ""}`)));
    box.appendChild(ul);
  }
  const body = op.requestBody && op.requestBody.content && op.requestBody.content["application/json"];
  if (body) {
    box.appendChild(el("h3", "", "Request body (JSON): " + typeOf(spec, body.schema)));
    box.appendChild(fieldsTable(spec, body.schema));
  }
  box.appendChild(el("h3", "", "Responses"));
  const ul = el("ul");
  Object.entries(op.responses || {}).forEach(([code, r]) => ul.appendChild(el("li", "", `${code}: ${r.description || ""}`)));
  box.appendChild(ul);
  return box;
}

async function main() {
  const spec = await (await fetch("/openapi.json")).json();
  $("api-version").textContent = `${spec.info.title} ${spec.info.version} (OpenAPI ${spec.openapi})`;
  $("api-description").textContent = spec.info.description || "";
  const list = $("endpoints");
  Object.entries(spec.paths).forEach(([path, ops]) => {
    Object.entries(ops).forEach(([method, op]) => list.appendChild(endpoint(spec, path, method, op)));
  });
}

main().catch((e) => { $("api-version").textContent = "cannot read /openapi.json: " + e.message; });

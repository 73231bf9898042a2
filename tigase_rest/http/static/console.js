// The console on the index page (GET /rest/): plain JavaScript, no build step, no CDN.
// Every call goes to this component's own REST API with the API key and login typed in the page;
// nothing is stored (a reload forgets the key and the password). The DOM is built with
// textContent only: answers from the server are never parsed as HTML.
"use strict";
(function () {
  const root = document.getElementById("console");
  if (!root) return;
  const base = root.dataset.base; // the context path, e.g. "/rest"
  const $ = (id) => document.getElementById(id);
  const MULTI = new Set(["list-multi", "jid-multi", "text-multi"]);
  let current = null; // the command being run: {jid, node, sessionid}

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (name === "text") node.textContent = value;
      else if (name === "on") for (const [ev, fn] of Object.entries(value)) node.addEventListener(ev, fn);
      else node.setAttribute(name, value === true ? "" : value);
    }
    for (const child of children) if (child) node.append(child);
    return node;
  }

  function base64(text) {
    let binary = "";
    for (const byte of new TextEncoder().encode(text)) binary += String.fromCharCode(byte);
    return btoa(binary);
  }

  function headers(extra) {
    // X-Requested-With: a 401 comes without a Basic challenge (no browser login dialog).
    const h = Object.assign({ Accept: "application/json", "X-Requested-With": "tigase-rest-console" }, extra || {});
    const key = $("c-key").value.trim();
    if (key) h["Api-Key"] = key;
    const jid = $("c-jid").value.trim();
    if (jid) h["Authorization"] = "Basic " + base64(jid + ":" + $("c-password").value);
    return h;
  }

  function status(text, isError) {
    const box = $("c-status");
    box.textContent = text;
    box.className = isError ? "c-error" : "c-ok";
  }

  async function call(method, path, body, contentType) {
    const options = { method, headers: headers(body === undefined ? {} : { "Content-Type": contentType || "application/json" }) };
    if (body !== undefined) options.body = typeof body === "string" ? body : JSON.stringify(body);
    const response = await fetch(base + path, options);
    const text = await response.text();
    let data = null;
    try { data = JSON.parse(text); } catch (e) { /* XML or empty */ }
    if (!response.ok) {
      const reason = data && data.error ? data.error.reason : text;
      throw new Error(response.status + ": " + reason);
    }
    return { status: response.status, data, text };
  }

  function encodeJid(jid) {
    return jid.split("/").map(encodeURIComponent).join("/").replace(/%40/g, "@");
  }

  // -- ad-hoc commands --

  async function listCommands() {
    const target = $("c-target").value.trim();
    const list = $("c-commands");
    list.replaceChildren();
    $("c-form").replaceChildren();
    try {
      const { data } = await call("GET", "/adhoc/" + encodeJid(target));
      const items = data.items || [];
      status(items.length + " commands offered by " + target);
      for (const item of items) {
        list.append(el("li", {}, el("button", {
          type: "button", class: "c-command", "data-node": item.node, text: item.name || item.node,
          on: { click: () => openCommand(item.jid || target, item.node) },
        })));
      }
    } catch (e) {
      status(e.message, true);
    }
  }

  async function openCommand(jid, node) {
    current = { jid, node, sessionid: null };
    await run({ command: { node } });
  }

  async function run(body) {
    try {
      const { data } = await call("POST", "/adhoc/" + encodeJid(current.jid), body);
      const command = data.command;
      current.sessionid = command.sessionid || null;
      status((command.title || command.node) + ": " + (command.status || "answered"));
      renderCommand(command);
    } catch (e) {
      status(e.message, true);
    }
  }

  function fieldInput(field) {
    const name = field.var;
    const value = field.value;
    const values = Array.isArray(value) ? value : value === null || value === undefined ? [] : [value];
    const options = field.options || [];
    switch (field.type) {
      case "boolean":
        return el("input", { type: "checkbox", name, checked: ["1", "true"].includes(values[0]) });
      case "list-single":
      case "list-multi": {
        const select = el("select", { name, multiple: field.type === "list-multi" });
        if (field.type === "list-single" && !field.required) select.append(el("option", { value: "", text: "" }));
        for (const option of options) {
          select.append(el("option", {
            value: option.value, text: option.label || option.value, selected: values.includes(option.value),
          }));
        }
        return select;
      }
      case "jid-multi":
      case "text-multi":
        return el("textarea", { name, rows: 3, placeholder: "one per line", text: values.join("\n") });
      case "text-private":
        return el("input", { type: "password", name, value: values[0] || "", autocomplete: "new-password" });
      default:
        return el("input", { type: "text", name, value: values[0] || "" });
    }
  }

  function renderCommand(command) {
    const box = $("c-form");
    box.replaceChildren();
    box.append(el("h3", { text: command.title || command.node }));
    if (command.instructions) box.append(el("p", { class: "c-instructions", text: command.instructions }));
    for (const note of command.notes || (command.note ? [command.note] : [])) {
      box.append(el("p", { class: "c-note c-note-" + (note.type || "info"), text: note.value }));
    }
    const form = el("form", { id: "c-command-form", "data-node": command.node });
    const editable = command.status === "executing" || command.type === "form";
    for (const field of command.fields || []) {
      if (field.type === "hidden") {
        form.append(el("input", { type: "hidden", name: field.var, value: [].concat(field.value || "")[0] }));
        continue;
      }
      if (field.type === "fixed" || !field.var) {
        form.append(el("p", { class: "c-fixed", text: [].concat(field.value || field.label || "").join("\n") }));
        continue;
      }
      const label = (field.label || field.var) + (field.required ? " *" : "");
      if (editable) {
        const input = fieldInput(field);
        input.dataset.type = field.type || "text-single";
        input.id = "c-field-" + field.var;
        form.append(el("div", { class: "c-field", title: field.desc },
          el("label", { for: input.id, text: label }), input));
      } else {
        const shown = [].concat(field.value === null || field.value === undefined ? [] : field.value).join("\n");
        form.append(el("div", { class: "c-field c-value" }, el("span", { class: "c-label", text: label }),
          el("span", { class: "c-shown", "data-var": field.var, text: shown })));
      }
    }
    for (const table of command.reported || []) form.append(reportedTable(table));
    if (command.status === "executing" || (editable && command.status !== "completed")) {
      const actions = command.actions && command.actions.length ? command.actions : ["execute"];
      const bar = el("div", { class: "c-actions" });
      for (const action of actions) {
        bar.append(el("button", {
          type: "button", "data-action": action, text: action,
          on: { click: () => submit(form, action === "execute" ? null : action) },
        }));
      }
      if (current.sessionid) {
        bar.append(el("button", { type: "button", "data-action": "cancel", text: "cancel",
          on: { click: () => run({ command: { node: current.node, sessionid: current.sessionid, action: "cancel" } }) } }));
      }
      form.append(bar);
      form.addEventListener("submit", (ev) => { ev.preventDefault(); submit(form, command.default_action || null); });
    } else {
      form.append(el("p", { class: "c-done", text: "Status: " + (command.status || "done") }));
    }
    box.append(form);
  }

  function reportedTable(table) {
    const columns = table.fields || [];
    const head = el("tr", {}, ...columns.map((c) => el("th", { text: c.label || c.var })));
    const rows = (table.items || []).map((item) => {
      const byVar = Object.fromEntries((item.fields || []).map((f) => [f.var, f.value]));
      return el("tr", {}, ...columns.map((c) => el("td", { text: [].concat(byVar[c.var] ?? "").join(", ") })));
    });
    return el("table", { class: "c-reported" }, el("caption", { text: table.label || "" }), el("thead", {}, head),
      el("tbody", {}, ...rows));
  }

  function submit(form, action) {
    const fields = [];
    for (const input of form.querySelectorAll("[name]")) {
      const type = input.dataset.type || input.type;
      let value;
      if (input.type === "checkbox") value = input.checked ? "1" : "0";
      else if (input.tagName === "SELECT" && input.multiple) value = [...input.selectedOptions].map((o) => o.value);
      else if (MULTI.has(type)) value = input.value.split("\n").map((s) => s.trim()).filter(Boolean);
      else value = input.value;
      fields.push({ var: input.name, value });
    }
    const command = { node: current.node, fields };
    if (current.sessionid) command.sessionid = current.sessionid;
    if (action) command.action = action;
    return run({ command });
  }

  // -- a stanza, an avatar --

  async function sendStanza() {
    const out = $("c-stanza-result");
    try {
      const { status: code, text } = await call("POST", "/stream/", $("c-stanza").value, "application/xml");
      out.textContent = code + (text ? "\n" + text : " (sent)");
      status("Stanza sent");
    } catch (e) {
      out.textContent = e.message;
      status(e.message, true);
    }
  }

  async function showAvatar() {
    const img = $("c-avatar-img");
    try {
      const response = await fetch(base + "/avatar/" + encodeJid($("c-avatar-jid").value.trim()) + "?type=application/json",
        { headers: headers({ Accept: "image/*" }) });
      if (!response.ok) {
        const text = await response.text();
        let reason = text;
        try { reason = JSON.parse(text).error.reason; } catch (e) { /* not JSON */ }
        throw new Error(response.status + ": " + reason);
      }
      if (img.src) URL.revokeObjectURL(img.src);
      img.src = URL.createObjectURL(await response.blob());
      img.hidden = false;
      status("Avatar shown");
    } catch (e) {
      img.hidden = true;
      status(e.message, true);
    }
  }

  $("c-list").addEventListener("click", listCommands);
  $("c-target").addEventListener("keydown", (ev) => { if (ev.key === "Enter") listCommands(); });
  $("c-send").addEventListener("click", sendStanza);
  $("c-avatar-get").addEventListener("click", showAvatar);
})();

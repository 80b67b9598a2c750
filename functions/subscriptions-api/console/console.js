// The webhooks console: a framework-free single-page app over the API.
//
// Safety rules this file keeps (the page's Content-Security-Policy and
// Trusted Types enforce the first two):
// - every element is built with the DOM (el()); text from the API is set as
//   text nodes, never parsed as HTML;
// - no inline scripts or styles;
// - the bearer token lives in sessionStorage only (never localStorage or a
//   cookie), and a signing secret only in the panel that shows it: closing
//   the panel or leaving the view removes it from the page and from memory;
// - no token is ever taken from the address: the console signs in through
//   the OpenID provider, or (the local stack only, when its settings offer
//   `dev_sign_in`) with a one-time code it exchanges; it never switches a
//   signed-in session to another account without asking.
"use strict";

(() => {
  const TOKEN_KEY = "webhooks-console.token";
  const PKCE_KEY = "webhooks-console.pkce";
  // The fragment parameter of the local stack's one-time sign-in links.
  const DEV_CODE = "dev-code";
  // The API is served beside the console: /console -> the API's root.
  const API_BASE = location.pathname.replace(/\/console\/?$/, "");
  const main = document.getElementById("main");

  // ---- DOM ---------------------------------------------------------------

  /** An element with attributes (`on` holds event listeners) and children;
   * strings become text nodes. */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (name === "on") {
        for (const [event, fn] of Object.entries(value)) node.addEventListener(event, fn);
      } else if (name === "class") {
        node.className = value;
      } else if (value === true) {
        node.setAttribute(name, "");
      } else {
        node.setAttribute(name, String(value));
      }
    }
    append(node, children);
    return node;
  }

  function append(node, children) {
    for (const child of children.flat(Infinity)) {
      if (child === undefined || child === null || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function svg(tag, attrs, ...children) {
    const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
    return append(node, children);
  }

  function replace(node, ...children) {
    node.replaceChildren();
    return append(node, children);
  }

  let toastTimer;
  function toast(message, kind) {
    const box = document.getElementById("toast");
    box.className = "toast visible " + (kind || "");
    box.textContent = message;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { box.className = "toast"; }, 4000);
  }

  // ---- Times -------------------------------------------------------------

  function absolute(iso) {
    const d = new Date(iso);
    return d.toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
  }

  function relative(iso) {
    const seconds = Math.round((Date.parse(iso) - Date.now()) / 1000);
    const abs = Math.abs(seconds);
    const units = [["day", 86400], ["hour", 3600], ["minute", 60], ["second", 1]];
    const rtf = new Intl.RelativeTimeFormat("en", { numeric: "auto" });
    for (const [unit, size] of units) {
      if (abs >= size || unit === "second") return rtf.format(Math.trunc(seconds / size), unit);
    }
    return "";
  }

  /** A time shown relative, with the absolute UTC time beside it. */
  function time(iso) {
    if (!iso) return el("span", { class: "muted" }, "—");
    return el("span", { class: "time" },
      el("time", { datetime: iso, title: absolute(iso) }, relative(iso)),
      el("span", { class: "abs" }, absolute(iso)));
  }

  // ---- Sign-in -----------------------------------------------------------

  function b64url(bytes) {
    let s = "";
    for (const b of new Uint8Array(bytes)) s += String.fromCharCode(b);
    return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function claims(token) {
    try {
      const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      return JSON.parse(atob(part + "=".repeat((4 - (part.length % 4)) % 4)));
    } catch {
      return null;
    }
  }

  function token() {
    const t = sessionStorage.getItem(TOKEN_KEY);
    if (!t) return null;
    const c = claims(t);
    if (c && typeof c.exp === "number" && c.exp * 1000 < Date.now()) {
      sessionStorage.removeItem(TOKEN_KEY);
      return null;
    }
    return t;
  }

  function signOut() {
    sessionStorage.removeItem(TOKEN_KEY);
    location.hash = "#/";
    render();
  }

  // Claims that differ between two tokens of one account.
  const TOKEN_ONLY_CLAIMS = ["iat", "exp", "nbf", "jti", "auth_time", "at_hash", "nonce"];

  /** The account a token signs in as: its claims but the per-token ones. */
  function account(t) {
    const c = claims(t) || {};
    for (const name of TOKEN_ONLY_CLAIMS) delete c[name];
    return JSON.stringify(Object.keys(c).sort().map((name) => [name, c[name]]));
  }

  /** Sign-in material in the address (`#token=`, `#dev-code=`) is removed
   * from it at once, so it stays out of the history. A token there is
   * never used. A one-time code is exchanged only where the settings offer
   * development sign-in (the local stack); while signed in, switching to
   * another account is asked first, and declining keeps the session.
   * Returns what to tell a signed-out user, if anything. */
  async function signInFromAddress() {
    const params = new URLSearchParams(location.hash.slice(1));
    if (!params.has("token") && !params.has(DEV_CODE)) return null;
    history.replaceState(null, "", location.pathname + "#/");
    const code = params.get(DEV_CODE);
    if (!code || !settings.dev_sign_in) {
      return "This console takes no token from its address; sign in below.";
    }
    let handed;
    try {
      const r = await fetch(settings.dev_sign_in.path, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ code }),
      });
      const body = await r.json().catch(() => ({}));
      if (!r.ok || typeof body.token !== "string") {
        throw new Error((body.error && body.error.message) || "the sign-in link was refused (" + r.status + ")");
      }
      handed = body.token;
    } catch (e) {
      if (!token()) return e.message;
      toast(e.message, "bad");
      return null;
    }
    const current = token();
    if (current && account(current) !== account(handed)) {
      const from = (claims(current) || {}).sub || "your current account";
      const to = (claims(handed) || {}).sub || "another account";
      if (!confirm("This link signs in as " + to + ". You are signed in as " + from + ". Switch accounts?")) {
        toast("Still signed in as " + from + ".");
        return null;
      }
    }
    sessionStorage.setItem(TOKEN_KEY, handed);
    return null;
  }

  function redirectUri() {
    return location.origin + location.pathname;
  }

  async function discovery(oidc) {
    const r = await fetch(oidc.issuer + "/.well-known/openid-configuration");
    if (!r.ok) throw new Error("the sign-in provider's discovery document answered " + r.status);
    return r.json();
  }

  async function beginSignIn(oidc) {
    const endpoints = await discovery(oidc);
    const verifier = b64url(crypto.getRandomValues(new Uint8Array(32)));
    const state = b64url(crypto.getRandomValues(new Uint8Array(16)));
    const challenge = b64url(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier)));
    sessionStorage.setItem(PKCE_KEY, JSON.stringify({ verifier, state, token_endpoint: endpoints.token_endpoint }));
    const query = new URLSearchParams({
      response_type: "code",
      client_id: oidc.client_id,
      redirect_uri: redirectUri(),
      scope: oidc.scope,
      state,
      code_challenge: challenge,
      code_challenge_method: "S256",
    });
    location.assign(endpoints.authorization_endpoint + "?" + query);
  }

  /** Completes an authorization-code redirect (`?code=&state=`), if this
   * page load is one. */
  async function finishSignIn(oidc) {
    const params = new URLSearchParams(location.search);
    if (!params.has("code") && !params.has("error")) return;
    history.replaceState(null, "", location.pathname + "#/");
    const pending = JSON.parse(sessionStorage.getItem(PKCE_KEY) || "null");
    sessionStorage.removeItem(PKCE_KEY);
    if (params.has("error")) throw new Error("sign-in refused: " + params.get("error"));
    if (!pending || pending.state !== params.get("state")) throw new Error("sign-in response did not match the request");
    const r = await fetch(pending.token_endpoint, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({
        grant_type: "authorization_code",
        code: params.get("code"),
        redirect_uri: redirectUri(),
        client_id: oidc.client_id,
        code_verifier: pending.verifier,
      }),
    });
    const body = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error("the token endpoint refused the code: " + (body.error || r.status));
    // The ID token carries the audience (this client) and the company claim.
    const t = body.id_token || body.access_token;
    if (!t) throw new Error("the token endpoint returned no token");
    sessionStorage.setItem(TOKEN_KEY, t);
  }

  /** Development sign-in (the local stack only): its one-time links, or
   * a pasted development token. */
  function devSignInForm(dev) {
    const pasted = el("textarea", { id: "token-input", rows: 3, autocomplete: "off", spellcheck: "false" });
    const minutes = Math.round(dev.code_ttl_seconds / 60);
    return el("form", {
      id: "dev-sign-in",
      on: {
        submit: (e) => {
          e.preventDefault();
          const value = pasted.value.trim();
          if (!claims(value)) {
            toast("That is not a JWT.", "bad");
            return;
          }
          sessionStorage.setItem(TOKEN_KEY, value);
          render();
        },
      },
    },
    el("p", {}, "Local development: open the sign-in link local-stack printed (it works once, within " + minutes +
      " minutes; press Enter where it runs for a new one), or paste a token from ", el("code", {}, "make token"), "."),
    el("label", { for: "token-input" }, "Development token"),
    pasted,
    el("p", {}, el("button", { type: "submit", class: "secondary" }, "Use this token")));
  }

  function signInView(problem) {
    return el("div", { class: "card narrow" },
      el("h1", {}, "Sign in"),
      problem ? el("p", { class: "error", role: "alert" }, problem) : null,
      settings.oidc
        ? el("p", {}, el("button", {
            type: "button",
            id: "oidc-sign-in",
            on: { click: () => beginSignIn(settings.oidc).catch((e) => toast(e.message, "bad")) },
          }, "Sign in with " + new URL(settings.oidc.issuer).host))
        : null,
      settings.dev_sign_in ? devSignInForm(settings.dev_sign_in) : null,
      !settings.oidc && !settings.dev_sign_in
        ? el("p", {}, "This console has no sign-in configured: its API needs an OpenID client (ConsoleOidcClientId).")
        : null);
  }

  // ---- API ---------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, error) {
      super((error && error.message) || "request failed (" + status + ")");
      this.status = status;
      this.code = error && error.code;
      this.field = error && error.field;
    }
  }

  async function api(method, path, body, headers) {
    const init = { method, headers: Object.assign({ authorization: "Bearer " + token() }, headers || {}) };
    if (body !== undefined) {
      init.headers["content-type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let r;
    try {
      r = await fetch(API_BASE + path, init);
    } catch {
      throw new ApiError(0, { message: "the API could not be reached" });
    }
    const data = r.status === 204 ? null : await r.json().catch(() => null);
    if (r.status === 401) {
      sessionStorage.removeItem(TOKEN_KEY);
      render("Your session has ended; sign in again.");
      throw new ApiError(401, data && data.error);
    }
    if (!r.ok) throw new ApiError(r.status, data && (data.error || { message: data.message }));
    return data;
  }

  /** A section that loads: "Loading…", then `build(data)`, or the error
   * with a retry button. */
  function loader(load, build) {
    const box = el("div", { class: "loader", "aria-busy": "true" }, el("p", { class: "loading" }, "Loading…"));
    const run = () => {
      box.setAttribute("aria-busy", "true");
      replace(box, el("p", { class: "loading" }, "Loading…"));
      load().then(
        (data) => { box.removeAttribute("aria-busy"); replace(box, build(data, run)); },
        (e) => {
          box.removeAttribute("aria-busy");
          replace(box, el("p", { class: "error", role: "alert" }, e.message, " ",
            el("button", { type: "button", class: "secondary", on: { click: run } }, "Retry")));
        });
    };
    run();
    return box;
  }

  // ---- Badges ------------------------------------------------------------

  function statusBadge(status) {
    return el("span", { class: "badge status-" + status, "data-status": status }, status);
  }

  function healthBadge(health) {
    const label = { closed: "healthy", open: "failing", half_open: "probing" }[health.state] || health.state;
    const kind = health.state === "closed" && health.consecutive_failures > 0 ? "flaky" : health.state;
    return el("span", { class: "badge health-" + kind, "data-health": health.state },
      health.state === "closed" && health.consecutive_failures > 0 ? "retrying" : label);
  }

  function outcomeBadge(outcome) {
    return el("span", { class: "badge outcome-" + outcome }, outcome);
  }

  // ---- Endpoint list -----------------------------------------------------

  function listView() {
    const filter = new URLSearchParams(location.hash.split("?")[1] || "").get("status") || "";
    const select = el("select", {
      id: "status-filter",
      on: { change: () => { location.hash = "#/" + (select.value ? "?status=" + select.value : ""); } },
    }, ["", "active", "disabled", "archived"].map((s) =>
      el("option", { value: s, selected: s === filter }, s || "all (not archived)")));
    const rows = el("tbody");
    const more = el("p");
    const load = (cursor) => {
      const q = new URLSearchParams({ limit: "25" });
      if (filter) q.set("status", filter);
      if (cursor) q.set("cursor", cursor);
      return api("GET", "/webhooks?" + q);
    };
    const fill = (page) => {
      for (const sub of page.data) {
        rows.append(el("tr", { "data-id": sub.id },
          el("td", {}, el("a", { href: "#/webhooks/" + encodeURIComponent(sub.id), class: "url" }, sub.url),
            sub.description ? el("div", { class: "muted desc" }, sub.description) : null),
          el("td", {}, statusBadge(sub.status)),
          el("td", {}, healthBadge(sub.health)),
          el("td", {}, time(sub.created_at))));
      }
      replace(more, page.next_cursor
        ? el("button", { type: "button", class: "secondary", on: { click: () => load(page.next_cursor).then(fill, (e) => toast(e.message, "bad")) } }, "Load more")
        : null);
      return null;
    };
    const table = el("table", { class: "list" },
      el("caption", { class: "sr" }, "Endpoints"),
      el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "Endpoint"), el("th", { scope: "col" }, "Status"),
        el("th", { scope: "col" }, "Health"), el("th", { scope: "col" }, "Created"))),
      rows);
    return [
      el("div", { class: "bar" },
        el("h1", {}, "Endpoints"),
        el("a", { class: "button", href: "#/new", id: "new-endpoint" }, "Add endpoint")),
      el("p", { class: "filter" }, el("label", { for: "status-filter" }, "Status "), select),
      loader(() => load(null), (page) => {
        if (page.data.length === 0) return el("p", { class: "empty" }, "No endpoints yet. Add one to start receiving webhooks.");
        fill(page);
        return [el("div", { class: "scroll" }, table), more];
      }),
    ];
  }

  // ---- Create and edit ---------------------------------------------------

  function checkboxes(name, legend, options, chosen) {
    return el("fieldset", { class: "picker", id: name },
      el("legend", {}, legend),
      el("p", { class: "hint" }, "None ticked: all of them."),
      el("div", { class: "choices" }, options.map((o) => {
        const id = name + "-" + o.value;
        return el("label", { for: id, class: "choice" },
          el("input", { type: "checkbox", id, name, value: o.value, checked: chosen.includes(o.value) }),
          " ", o.label, o.hint ? el("span", { class: "muted" }, " — " + o.hint) : null);
      })),
      el("p", { class: "field-error", id: name + "-error", "aria-live": "polite" }));
  }

  /** A textarea of one value per line. */
  function linesInput(id, values) {
    const input = el("textarea", { id, name: id, rows: 2, "aria-describedby": id + "-error", spellcheck: "false" });
    input.value = (values || []).join("\n");
    return input;
  }

  function lines(input) {
    return input.value.split(/\r?\n/).map((line) => line.trim()).filter(Boolean);
  }

  /** The platform event types as choices: `*`, each group's wildcard, then
   * each type, grouped. */
  function eventTypeChoices(eventTypes) {
    const platform = eventTypes.filter((t) => !t.name.startsWith("job.") && t.name !== "webhook.test");
    const groups = [...new Set(platform.map((t) => t.group || t.name.split(".")[0]))];
    const choices = [{ value: "*", label: "*", hint: "every platform event, including types added later" }];
    for (const g of groups) {
      choices.push({ value: g + ".*", label: g + ".*", hint: "every " + g + " event" });
      for (const t of platform.filter((t) => (t.group || t.name.split(".")[0]) === g)) {
        choices.push({ value: t.name, label: t.name, hint: (t.deprecated ? "deprecated — " : "") + t.description });
      }
    }
    return choices;
  }

  /** Rows of custom headers: names with values (masked for stored ones,
   * which are never shown). Returns the fieldset and a function giving the
   * `headers` of the request: on create every row, on edit only the
   * changes (a new value, or `null` for a removed header). */
  function headersEditor(stored) {
    const rows = el("div", { class: "header-rows" });
    const removed = new Set();
    const addRow = (name, masked) => {
      const n = rows.children.length;
      const nameInput = el("input", { class: "header-name", "aria-label": "Header name", value: name || "", placeholder: "x-api-key", spellcheck: "false", autocomplete: "off", readonly: masked ? true : null });
      const valueInput = el("input", { class: "header-value", type: "password", "aria-label": "Header value", placeholder: masked ? "unchanged (stored sealed)" : "value", autocomplete: "off", spellcheck: "false" });
      const row = el("div", { class: "header-row", id: "header-row-" + n, "data-stored": masked ? name : null },
        nameInput, valueInput,
        el("button", { type: "button", class: "secondary remove-header", on: { click: () => { if (masked) removed.add(name); row.remove(); } } }, "Remove"));
      rows.append(row);
    };
    for (const name of Object.keys(stored || {})) addRow(name, true);
    const fieldset = el("fieldset", { class: "picker", id: "headers" },
      el("legend", {}, "Custom headers (optional)"),
      el("p", { class: "hint" }, "Sent with every delivery, e.g. an API key or basic auth for a receiver behind a gateway. Values are stored encrypted and never shown again."),
      rows,
      el("p", {}, el("button", { type: "button", class: "secondary", id: "add-header", on: { click: () => addRow("", false) } }, "Add header")),
      el("p", { class: "field-error", id: "headers-error", "aria-live": "polite" }));
    const value = () => {
      const out = {};
      for (const name of removed) out[name] = null;
      for (const row of rows.querySelectorAll(".header-row")) {
        const name = row.querySelector(".header-name").value.trim();
        const v = row.querySelector(".header-value").value;
        if (!name) continue;
        if (row.dataset.stored && !v) continue;
        out[name] = v;
      }
      return out;
    };
    return [fieldset, value];
  }

  // ---- Body formats ------------------------------------------------------

  /** The body formats, in the API's order, with what the console calls them. */
  const FORMATS = [
    { value: "standard", label: "Standard", long: "Standard payload (signed JSON)" },
    { value: "slack", label: "Slack", long: "Slack (Block Kit message)" },
    { value: "pagerduty", label: "PagerDuty", long: "PagerDuty (Events API v2 event)" },
    { value: "teams", label: "Microsoft Teams", long: "Microsoft Teams (Adaptive Card)" },
    { value: "template", label: "Template", long: "Template (your own JSON)" },
  ];

  function formatLabel(type) {
    const f = FORMATS.find((f) => f.value === type);
    return f ? f.long : type;
  }

  const SEVERITIES = ["critical", "error", "warning", "info"];

  /** What a new template starts as: every event has these fields. */
  const STARTER_TEMPLATE = [
    "{",
    '  "text": {{ ("Event " ~ type ~ " at " ~ timestamp)|tojson }},',
    '  "type": {{ type|tojson }},',
    '  "data": {{ data|tojson }}',
    "}",
  ].join("\n");

  /** A rendered body as text: pretty JSON, set as text by the caller. */
  function pretty(body) {
    return JSON.stringify(body, null, 2);
  }

  /** The body of `event_type` in `format`, from the preview route. */
  function preview(format, eventType) {
    return api("POST", "/webhooks/preview", { format, event_type: eventType });
  }

  /** The form's "Body format" section: the format's settings beside a live
   * preview of the body (debounced, the latest request wins). Returns the
   * section, the `format` of a request (create: `null` for standard; edit:
   * `null` to go back to standard, a PagerDuty key left empty keeps the
   * stored one) and a function that sets the preview's default event type
   * for a kind of endpoint. */
  function formatEditor(stored, eventTypes) {
    const now = stored || { type: "standard" };
    const errorFor = (id) => el("p", { class: "field-error", id: id + "-error", "aria-live": "polite" });
    const type = el("select", { id: "format-type", name: "format-type", "aria-describedby": "format-type-error" },
      FORMATS.map((f) => el("option", { value: f.value, selected: f.value === now.type ? true : null }, f.long)));
    const keptKey = now.type === "pagerduty";
    const routingKey = el("input", {
      id: "format-routing_key", name: "format-routing_key", type: "password", autocomplete: "off", spellcheck: "false",
      placeholder: keptKey ? "unchanged (stored sealed)" : "the integration key of a PagerDuty service",
      "aria-describedby": "format-routing_key-hint format-routing_key-error",
    });
    const severity = el("select", { id: "format-severity", name: "format-severity", "aria-describedby": "format-severity-error" },
      el("option", { value: "" }, "per event type (default)"),
      SEVERITIES.map((s) => el("option", { value: s, selected: now.severity === s ? true : null }, s)));
    const template = el("textarea", {
      id: "format-template", name: "format-template", class: "code", rows: 12, spellcheck: "false", autocomplete: "off",
      "aria-describedby": "format-template-hint format-template-error",
    });
    template.value = now.type === "template" && typeof now.template === "string" ? now.template : STARTER_TEMPLATE;
    const pagerduty = el("div", { id: "format-pagerduty" },
      el("label", { for: "format-routing_key" }, "Routing key"),
      routingKey,
      el("p", { class: "hint", id: "format-routing_key-hint" }, keptKey
        ? "Stored encrypted and never shown. Leave empty to keep it; type a new one to replace it."
        : "The integration key of the PagerDuty service (Events API v2). Stored encrypted and never shown again."),
      errorFor("format-routing_key"),
      el("label", { for: "format-severity" }, "Severity"),
      severity,
      el("p", { class: "hint" }, "By default a failed job is an error; other event types have a severity of their own."),
      errorFor("format-severity"));
    const templateBox = el("div", { id: "format-template-box" },
      el("label", { for: "format-template" }, "Template"),
      template,
      el("p", { class: "hint", id: "format-template-hint" },
        "A MiniJinja template that renders JSON. Variables: the event's top-level fields (",
        el("code", {}, "type"), ", ", el("code", {}, "timestamp"), ", ", el("code", {}, "data"), ", …) and ",
        el("code", {}, "event"), ", the whole event. Embed values with ", el("code", {}, "|tojson"), "."),
      errorFor("format-template"));

    // The preview: an event type of the catalogue and its body.
    const types = eventTypes.data;
    const groups = catalogueGroups(types);
    const eventType = el("select", { id: "preview-event-type", "aria-label": "Event type to preview" },
      groups.map((g) => el("optgroup", { label: GROUP_TITLES[g.name] || g.name },
        g.types.map((t) => el("option", { value: t.name }, t.name)))));
    let eventChosen = false;
    eventType.addEventListener("change", () => { eventChosen = true; });
    const body = el("pre", { class: "code", id: "preview-body", tabindex: "0", "aria-label": "Rendered body" });
    const problem = el("p", { class: "error", id: "preview-error", role: "status", hidden: true });
    const panel = el("div", { class: "preview", id: "format-preview", "aria-live": "polite" },
      el("label", { for: "preview-event-type" }, "Preview with the example of"),
      eventType,
      el("p", { class: "hint", id: "preview-caption" }, "The body an endpoint in this format is sent, rendered by the API."),
      problem, body);

    const chosen = () => type.value;
    /** The `format` object, with the routing key when `withKey`. */
    const format = (withKey) => {
      const f = { type: chosen() };
      if (f.type === "pagerduty") {
        if (withKey && routingKey.value) f.routing_key = routingKey.value;
        if (severity.value) f.severity = severity.value;
      } else if (f.type === "template") {
        f.template = template.value;
      }
      return f;
    };
    let seq = 0;
    let timer = null;
    const renderNow = () => {
      clearTimeout(timer);
      const mine = ++seq;
      panel.setAttribute("aria-busy", "true");
      preview(format(false), eventType.value).then(
        (r) => {
          if (mine !== seq) return;
          problem.hidden = true;
          problem.textContent = "";
          body.hidden = false;
          body.textContent = pretty(r.body);
          panel.dataset.state = "ok";
          panel.removeAttribute("aria-busy");
        },
        (e) => {
          if (mine !== seq) return;
          problem.textContent = e.message;
          problem.hidden = false;
          body.hidden = true;
          body.textContent = "";
          panel.dataset.state = "error";
          panel.removeAttribute("aria-busy");
        });
    };
    const renderSoon = () => {
      clearTimeout(timer);
      seq++;
      panel.setAttribute("aria-busy", "true");
      timer = setTimeout(renderNow, 300);
    };
    const show = () => {
      pagerduty.hidden = chosen() !== "pagerduty";
      templateBox.hidden = chosen() !== "template";
    };
    type.addEventListener("change", () => { show(); renderNow(); });
    severity.addEventListener("change", renderNow);
    eventType.addEventListener("change", renderNow);
    template.addEventListener("input", renderSoon);

    const section = el("fieldset", { class: "picker", id: "format" },
      el("legend", {}, "Body format"),
      el("p", { class: "hint" }, "What each delivery's body looks like. Every format is signed the same way."),
      el("div", { class: "format-grid" },
        el("div", { class: "format-settings" },
          el("label", { for: "format-type" }, "Format"), type, errorFor("format-type"),
          pagerduty, templateBox, errorFor("format")),
        panel));
    show();
    const value = (editing) => {
      const f = format(true);
      if (f.type === "standard") return editing && now.type !== "standard" ? null : undefined;
      return f;
    };
    /** The preview's event type for a kind of endpoint, unless one was
     * picked; renders the preview. */
    const forKind = (kind) => {
      if (!eventChosen) {
        const first = kind === "jobs"
          ? types.find((t) => t.name === "job.failed")
          : types.find((t) => !t.name.startsWith("job.") && t.name !== "webhook.test");
        if (first) eventType.value = first.name;
      }
      renderNow();
    };
    return [section, value, forKind];
  }

  function formView(existing) {
    const filters = (existing && existing.filters) || {};
    return loader(
      () => Promise.all([api("GET", "/job-types"), api("GET", "/event-types")]),
      ([jobTypes, eventTypes]) => {
        const url = el("input", { id: "url", name: "url", type: "url", required: true, value: existing ? existing.url : "", placeholder: "https://example.com/webhooks", "aria-describedby": "url-error", autocomplete: "url" });
        const description = el("textarea", { id: "description", name: "description", rows: 2, "aria-describedby": "description-error" });
        description.value = (existing && existing.description) || "";
        const kindNow = (existing && existing.kind) || "jobs";
        const kindChoice = (value, label, hint) => el("label", { for: "kind-" + value, class: "choice" },
          el("input", { type: "radio", id: "kind-" + value, name: "kind", value, checked: kindNow === value, disabled: existing ? true : null }),
          " ", label, el("span", { class: "muted" }, " — " + hint));
        const kind = el("fieldset", { class: "picker", id: "kind" },
          el("legend", {}, "Receives"),
          existing ? el("p", { class: "hint" }, "The kind of an endpoint can't change.") : null,
          el("div", { class: "choices" },
            kindChoice("jobs", "Job state changes", "jobs of your company moving between states"),
            kindChoice("events", "Platform events", "app, subject/verb and engine events")),
          el("p", { class: "field-error", id: "kind-error", "aria-live": "polite" }));
        const jobIds = linesInput("job_ids", filters.job_ids);
        const states = checkboxes("states", "Event types",
          eventTypes.data.filter((t) => t.name.startsWith("job.")).map((t) => ({ value: t.name.slice(4), label: t.name, hint: t.description })),
          filters.states || []);
        const types = checkboxes("job_types", "Job types",
          jobTypes.data.map((t) => ({ value: t.name, label: t.name, hint: t.description })),
          filters.job_types || []);
        const vocabulary = eventTypes.vocabulary || { subject_types: [], verbs: [] };
        const platformTypes = checkboxes("event_types", "Event types", eventTypeChoices(eventTypes.data), filters.event_types || []);
        platformTypes.querySelector(".hint").textContent = "Tick at least one: a type, a group's wildcard, or * for all.";
        const subjectTypes = checkboxes("subject_types", "Subject types",
          vocabulary.subject_types.map((v) => ({ value: v, label: v })), filters.subject_types || []);
        const verbs = checkboxes("verbs", "Verbs",
          vocabulary.verbs.map((v) => ({ value: v, label: v, hint: (vocabulary.verb_descriptions || {})[v] })), filters.verbs || []);
        const subjectIds = linesInput("subject_ids", filters.subject_ids);
        const appIds = linesInput("app_ids", filters.app_ids);
        const errorFor = (id) => el("p", { class: "field-error", id: id + "-error", "aria-live": "polite" });
        const jobsSection = el("div", { id: "jobs-filters" },
          states, types,
          el("label", { for: "job_ids" }, "Job ids (optional, one per line)"), jobIds, errorFor("job_ids"));
        const eventsSection = el("div", { id: "events-filters" },
          platformTypes, subjectTypes, verbs,
          el("label", { for: "subject_ids" }, "Subject ids (optional, one per line)"), subjectIds, errorFor("subject_ids"),
          el("label", { for: "app_ids" }, "App ids (optional, one per line): only these apps' events"), appIds, errorFor("app_ids"));
        const chosenKind = () => kind.querySelector("input[name=kind]:checked").value;
        const [formatSection, formatValue, previewFor] = formatEditor(existing && existing.format, eventTypes);
        const showKind = () => {
          const k = chosenKind();
          jobsSection.hidden = k !== "jobs";
          eventsSection.hidden = k !== "events";
          previewFor(k);
        };
        kind.addEventListener("change", showKind);
        const schemesNow = (existing && existing.signature_schemes) || ["v1"];
        const scheme = el("select", { id: "signature_schemes", name: "signature_schemes", "aria-describedby": "signature_schemes-error" },
          [["v1", "v1: HMAC-SHA256 with a shared secret"], ["v1a", "v1a: Ed25519, receivers hold a public key"], ["v1 v1a", "both"]].map(([value, label]) =>
            el("option", { value, selected: schemesNow.join(" ") === value ? true : null }, label)));
        const [headers, headersValue] = headersEditor(existing && existing.headers);
        const formError = el("p", { class: "error", role: "alert", hidden: true });
        const submit = el("button", { type: "submit" }, existing ? "Save changes" : "Create endpoint");
        // One key per body: a retried submission of the same endpoint is
        // answered with the original; a changed form is a new request.
        let idempotencyKey = null;
        let keyedBody = null;
        const form = el("form", { class: "card", novalidate: true, id: "endpoint-form" },
          el("h1", {}, existing ? "Edit endpoint" : "Add endpoint"),
          el("label", { for: "url" }, "Endpoint URL"), url, errorFor("url"),
          el("label", { for: "description" }, "Description (optional)"), description, errorFor("description"),
          kind, jobsSection, eventsSection,
          formatSection,
          el("label", { for: "signature_schemes" }, "Signature scheme"), scheme, errorFor("signature_schemes"),
          headers,
          formError,
          el("p", { class: "actions" }, submit, " ",
            el("a", { class: "button secondary", href: existing ? "#/webhooks/" + encodeURIComponent(existing.id) : "#/" }, "Cancel")));
        showKind();
        form.addEventListener("submit", async (e) => {
          e.preventDefault();
          for (const p of form.querySelectorAll(".field-error")) p.textContent = "";
          formError.hidden = true;
          const ticked = (name) => [...form.querySelectorAll("input[name=" + name + "]:checked")].map((i) => i.value);
          const k = chosenKind();
          const chosen = k === "jobs"
            ? { job_ids: lines(jobIds), job_types: ticked("job_types"), states: ticked("states") }
            : { event_types: ticked("event_types"), subject_types: ticked("subject_types"), verbs: ticked("verbs"), subject_ids: lines(subjectIds), app_ids: lines(appIds) };
          const f = {};
          for (const [key, v] of Object.entries(chosen)) if (v.length) f[key] = v;
          const body = {
            url: url.value.trim(),
            description: description.value.trim() || null,
            kind: k,
            filters: Object.keys(f).length ? f : null,
            signature_schemes: scheme.value.split(" "),
            headers: headersValue(),
          };
          if (!Object.keys(body.headers).length) delete body.headers;
          const format = formatValue(!!existing);
          if (format !== undefined) body.format = format;
          submit.disabled = true;
          submit.textContent = "Saving…";
          try {
            if (existing) {
              await api("PATCH", "/webhooks/" + encodeURIComponent(existing.id), body, { "if-match": '"' + existing.version + '"' });
              toast("Saved.", "good");
              location.hash = "#/webhooks/" + encodeURIComponent(existing.id);
            } else {
              if (!body.description) delete body.description;
              if (!body.filters) delete body.filters;
              if (JSON.stringify(body) !== keyedBody) {
                keyedBody = JSON.stringify(body);
                idempotencyKey = crypto.randomUUID();
              }
              const created = await api("POST", "/webhooks", body, { "idempotency-key": idempotencyKey });
              location.hash = "#/webhooks/" + encodeURIComponent(created.id);
              // After the view has rendered, show the secret once.
              pendingSecret = created;
            }
          } catch (err) {
            const field = (err.field || "").replace(/^filters\./, "").replace(/^headers\..*$/, "headers").replace(/^format\./, "format-").replace(/\[.*$/, "");
            const target = form.querySelector("#" + CSS.escape(field) + "-error");
            if (target) {
              target.textContent = err.message;
              const input = form.querySelector("#" + CSS.escape(field));
              if (input && input.focus) input.focus();
            } else {
              formError.textContent = err.message;
              formError.hidden = false;
            }
          } finally {
            submit.disabled = false;
            submit.textContent = existing ? "Save changes" : "Create endpoint";
          }
        });
        queueMicrotask(() => url.focus());
        return form;
      });
  }

  // ---- The secret, shown once ---------------------------------------------

  /** Set by create: the new subscription with its secret, shown by the
   * detail view that renders next, then dropped. */
  let pendingSecret = null;

  function snippets(secret) {
    const s = secret || "whsec_...";
    return {
      Python: [
        "# pip install standardwebhooks",
        "from standardwebhooks import Webhook",
        "",
        'wh = Webhook("' + s + '")',
        "# body: the raw request body; headers: the request headers.",
        "# Raises on a bad signature or a timestamp older than 5 minutes.",
        "event = wh.verify(body, headers)",
      ],
      Node: [
        "// npm install standardwebhooks",
        'import { Webhook } from "standardwebhooks";',
        "",
        'const wh = new Webhook("' + s + '");',
        "// rawBody: the raw request body (string); headers: the request headers.",
        "// Throws on a bad signature or a timestamp older than 5 minutes.",
        "const event = wh.verify(rawBody, headers);",
      ],
      Go: [
        "// go get github.com/standard-webhooks/standard-webhooks/libraries/go",
        'import standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"',
        "",
        'wh, err := standardwebhooks.NewWebhook("' + s + '")',
        "// body: the raw request body; r.Header: the request headers.",
        "err = wh.Verify(body, r.Header)",
      ],
      Rust: [
        "// cargo add standardwebhooks",
        "use standardwebhooks::Webhook;",
        "",
        'let wh = Webhook::new("' + s + '")?;',
        "// body: the raw request body; headers: an http::HeaderMap.",
        "wh.verify(&body, &headers)?;",
      ],
    };
  }

  function snippetTabs(secret, idPrefix) {
    const code = snippets(secret);
    const pre = el("pre", { class: "code", id: idPrefix + "-code", tabindex: "0" });
    const tabs = el("div", { role: "tablist", class: "tabs", "aria-label": "Verification snippets" });
    const show = (lang) => {
      for (const b of tabs.children) b.setAttribute("aria-selected", String(b.dataset.lang === lang));
      pre.textContent = code[lang].join("\n");
    };
    for (const lang of Object.keys(code)) {
      tabs.append(el("button", { type: "button", role: "tab", "data-lang": lang, "aria-controls": idPrefix + "-code", on: { click: () => show(lang) } }, lang));
    }
    show("Python");
    return el("div", { class: "snippets" }, tabs, pre);
  }

  async function copy(text, what) {
    try {
      await navigator.clipboard.writeText(text);
      toast(what + " copied.", "good");
    } catch {
      toast("Copying is not allowed here; select the text and copy it.", "bad");
    }
  }

  /** The panel that shows a secret once. `onClose` runs after it has left
   * the page. */
  function secretPanel(created, heading, onClose) {
    let secret = created.standard_webhooks_secret;
    const panel = el("section", { class: "card secret", id: "secret-panel", "aria-labelledby": "secret-heading", tabindex: "-1" });
    const close = () => {
      secret = null;
      panel.remove();
      if (onClose) onClose();
    };
    const publicKey = created.public_key
      ? [el("label", { for: "public-key-value" }, "Public key (v1a, Ed25519): not a secret, shown on the endpoint's page too"),
        el("div", { class: "copy-row" },
          el("input", { id: "public-key-value", readonly: true, value: created.public_key, spellcheck: "false", autocomplete: "off" }),
          el("button", { type: "button", id: "copy-public-key", on: { click: () => copy(created.public_key, "Public key") } }, "Copy"))]
      : null;
    if (!secret) {
      append(panel, [
        el("h2", { id: "secret-heading" }, heading),
        el("p", {}, "This endpoint signs with Ed25519 only (v1a): receivers verify every webhook with its public key."),
        publicKey,
        el("p", {}, el("button", { type: "button", id: "close-secret", on: { click: close } }, "Done")),
      ]);
      queueMicrotask(() => panel.focus());
      return panel;
    }
    append(panel, [
      el("h2", { id: "secret-heading" }, heading),
      publicKey,
      el("p", {}, "Copy the signing secret now: it is shown only this once. Receivers verify every webhook with it."),
      el("label", { for: "secret-value" }, "Signing secret (Standard Webhooks form)"),
      el("div", { class: "copy-row" },
        el("input", { id: "secret-value", readonly: true, value: secret, spellcheck: "false", autocomplete: "off" }),
        el("button", { type: "button", id: "copy-secret", on: { click: () => secret && copy(secret, "Secret") } }, "Copy")),
      el("p", { class: "hint" }, "The same key as a plain UUID (for HMAC by hand): ",
        el("code", { id: "secret-raw" }, created.secret)),
      el("h3", {}, "Verify webhooks with this secret"),
      snippetTabs(secret, "secret-snippet"),
      el("p", {}, el("button", { type: "button", id: "close-secret", on: { click: close } }, "I have saved it — hide the secret")),
    ]);
    queueMicrotask(() => panel.focus());
    return panel;
  }

  // ---- Endpoint detail ---------------------------------------------------

  function detailView(id) {
    const path = "/webhooks/" + encodeURIComponent(id);
    const secretSlot = el("div");
    if (pendingSecret && pendingSecret.id === id) {
      secretSlot.append(secretPanel(pendingSecret, "Endpoint created"));
    }
    pendingSecret = null;
    return [secretSlot, loader(() => api("GET", path), (sub, reload) => {
      const confirmThen = (question, action) => () => { if (confirm(question)) action(); };
      const act = (label, fn) => async () => {
        try {
          await fn();
        } catch (e) {
          toast(label + " failed: " + e.message, "bad");
        }
      };
      const rotate = act("Rotation", async () => {
        const rotated = await api("POST", path + "/rotate-secret", {});
        replace(secretSlot, secretPanel(rotated, "Secret rotated", null));
        toast("Secret rotated; the previous one keeps working until " + absolute(rotated.previous_secret_expires_at || new Date().toISOString()) + ".", "good");
        reload();
      });
      const test = act("Test event", async () => {
        const sent = await api("POST", path + "/test");
        toast("Test event queued (" + sent.idempotency_key + ").", "good");
      });
      const archive = act("Archive", async () => {
        await api("DELETE", path);
        toast("Endpoint archived.", "good");
        reload();
      });
      const enable = act("Enable", async () => {
        await api("POST", path + "/enable");
        toast("Endpoint enabled; parked events are being delivered.", "good");
        reload();
      });
      const h = sub.health;
      const live = sub.status !== "archived";
      return [
        el("div", { class: "bar" },
          el("h1", { class: "url", id: "endpoint-url" }, sub.url),
          el("span", {}, statusBadge(sub.status), " ", healthBadge(h))),
        sub.description ? el("p", { class: "desc", id: "endpoint-description" }, sub.description) : null,
        el("p", { class: "actions" },
          live ? el("a", { class: "button secondary", href: "#" + path + "/edit", id: "edit" }, "Edit") : null, " ",
          live ? el("button", { type: "button", id: "send-test", on: { click: test } }, "Send test event") : null, " ",
          live ? el("button", { type: "button", class: "secondary", id: "rotate", on: { click: confirmThen("Rotate the signing secret? The current one stays valid for 24 hours.", rotate) } }, "Rotate secret") : null, " ",
          sub.status === "disabled" ? el("button", { type: "button", id: "enable", on: { click: enable } }, "Enable") : null, " ",
          live ? el("button", { type: "button", class: "danger", id: "archive", on: { click: confirmThen("Archive this endpoint? It stops receiving events.", archive) } }, "Archive") : null),
        el("dl", { class: "facts" },
          el("dt", {}, "Id"), el("dd", {}, el("code", {}, sub.id)),
          el("dt", {}, "Created"), el("dd", {}, time(sub.created_at)),
          el("dt", {}, "Receives"), el("dd", { id: "endpoint-kind" }, sub.kind === "events" ? "Platform events" : "Job state changes"),
          sub.kind === "events" ? [
            el("dt", {}, "Event types"), el("dd", { id: "endpoint-event-types" }, (sub.filters.event_types || []).join(", ")),
            sub.filters.subject_types ? [el("dt", {}, "Subject types"), el("dd", {}, sub.filters.subject_types.join(", "))] : null,
            sub.filters.subject_ids ? [el("dt", {}, "Subject ids"), el("dd", {}, sub.filters.subject_ids.join(", "))] : null,
            sub.filters.verbs ? [el("dt", {}, "Verbs"), el("dd", {}, sub.filters.verbs.join(", "))] : null,
            sub.filters.app_ids ? [el("dt", {}, "Apps"), el("dd", { id: "endpoint-app-ids" }, sub.filters.app_ids.join(", "))] : null,
          ] : [
            el("dt", {}, "Event types"), el("dd", {}, (sub.filters.states || []).map((s) => "job." + s).join(", ") || "all"),
            el("dt", {}, "Job types"), el("dd", {}, (sub.filters.job_types || []).join(", ") || "all"),
            sub.filters.job_ids ? [el("dt", {}, "Job ids"), el("dd", {}, sub.filters.job_ids.join(", "))] : null,
          ],
          el("dt", {}, "Body format"), el("dd", { id: "endpoint-format" }, formatFacts(sub.format)),
          el("dt", {}, "Signatures"), el("dd", { id: "endpoint-schemes" }, (sub.signature_schemes || ["v1"]).join(", ")),
          sub.public_key ? [el("dt", {}, "Public key"), el("dd", {}, el("code", { id: "endpoint-public-key" }, sub.public_key))] : null,
          sub.headers && Object.keys(sub.headers).length ? [el("dt", {}, "Custom headers"), el("dd", { id: "endpoint-headers" },
            Object.entries(sub.headers).map(([k, v]) => el("div", {}, el("code", {}, k), ": ", el("span", { class: "muted" }, v))))] : null,
          el("dt", {}, "Failures in a row"), el("dd", {}, String(h.consecutive_failures)),
          h.failing_since ? [el("dt", {}, "Failing since"), el("dd", {}, time(h.failing_since))] : null,
          h.last_failure ? [el("dt", {}, "Last failure"), el("dd", {}, time(h.last_failure.at), " ", h.last_failure.status_code ? "HTTP " + h.last_failure.status_code : h.last_failure.error || "")] : null,
          h.next_probe_at ? [el("dt", {}, "Next probe"), el("dd", {}, time(h.next_probe_at))] : null,
          h.parked_events ? [el("dt", {}, "Parked events"), el("dd", {}, String(h.parked_events))] : null,
          sub.archived_at ? [el("dt", {}, "Archived"), el("dd", {}, time(sub.archived_at), " ", sub.archived_reason || "")] : null,
          sub.disabled_at ? [el("dt", {}, "Disabled"), el("dd", {}, time(sub.disabled_at), " ", sub.disabled_reason || "")] : null),
        deliveriesSection(path),
        failedSection(path),
      ];
    })];
  }

  /** A subscription's format as the detail shows it: the routing key only
   * ever masked, a template's source as text. */
  function formatFacts(format) {
    const f = format || { type: "standard" };
    return [
      el("span", { id: "endpoint-format-type", "data-format": f.type }, formatLabel(f.type)),
      f.type === "pagerduty" ? [
        el("div", {}, "Routing key: ", el("code", { id: "endpoint-routing-key" }, f.routing_key || "********")),
        el("div", { id: "endpoint-severity" }, "Severity: ", f.severity || "per event type"),
      ] : null,
      f.type === "template" ? el("pre", { class: "code template", id: "endpoint-template", tabindex: "0" }, f.template || "") : null,
    ];
  }

  // ---- Deliveries: chart and log -----------------------------------------

  const DAY_MS = 24 * 3600 * 1000;
  // The template's default ParkedRetentionDays, for settings without it.
  const DEFAULT_RETENTION_DAYS = 30;

  /** The start of the chart's first hour: 23 whole hours before the
   * current one. */
  function chartStart() {
    return Math.floor(Date.now() / 3600000) * 3600000 - 23 * 3600000;
  }

  /** The attempts the chart covers (newest first), up to 10 pages. */
  async function lastDay(path) {
    const since = chartStart();
    const attempts = [];
    let cursor = null;
    for (let page = 0; page < 10; page++) {
      const q = new URLSearchParams({ limit: "100" });
      if (cursor) q.set("cursor", cursor);
      const r = await api("GET", path + "/deliveries?" + q);
      for (const a of r.data) if (Date.parse(a.at) >= since) attempts.push(a);
      const oldest = r.data[r.data.length - 1];
      if (!r.next_cursor || !oldest || Date.parse(oldest.at) < since) return { attempts, complete: true };
      cursor = r.next_cursor;
    }
    return { attempts, complete: false };
  }

  function chart({ attempts, complete }) {
    const first = chartStart();
    const buckets = Array.from({ length: 24 }, (_, i) => ({ start: first + i * 3600000, delivered: 0, failed: 0 }));
    for (const a of attempts) {
      const i = Math.floor((Date.parse(a.at) - first) / 3600000);
      if (i < 0 || i > 23) continue;
      if (a.outcome === "delivered") buckets[i].delivered++;
      else buckets[i].failed++;
    }
    const max = Math.max(1, ...buckets.map((b) => b.delivered + b.failed));
    const W = 24 * 20, H = 120;
    const bars = buckets.map((b, i) => {
      const dh = (b.delivered / max) * (H - 20);
      const fh = (b.failed / max) * (H - 20);
      const x = i * 20 + 3;
      const label = new Date(b.start).toISOString().slice(11, 16) + " UTC: " + b.delivered + " delivered, " + b.failed + " failed";
      return svg("g", { "data-hour": i },
        svg("title", {}, label),
        svg("rect", { class: "bar-delivered", x, y: H - 16 - dh, width: 14, height: dh }),
        svg("rect", { class: "bar-failed", x, y: H - 16 - dh - fh, width: 14, height: fh }),
        i % 6 === 0 ? svg("text", { x, y: H - 3, class: "axis" }, new Date(b.start).toISOString().slice(11, 16)) : null);
    });
    const delivered = buckets.reduce((n, b) => n + b.delivered, 0);
    const failed = buckets.reduce((n, b) => n + b.failed, 0);
    return el("figure", { class: "chart", id: "chart", "data-delivered": delivered, "data-failed": failed },
      svg("svg", { viewBox: "0 0 " + W + " " + H, role: "img", "aria-labelledby": "chart-caption", preserveAspectRatio: "none" }, bars),
      el("figcaption", { id: "chart-caption" },
        el("span", { class: "key delivered" }, delivered + " delivered"), " · ",
        el("span", { class: "key failed" }, failed + " failed"),
        " attempts per hour since " + new Date(first).toISOString().slice(11, 16) + " UTC yesterday",
        complete ? "" : " (the latest 1,000 attempts)"));
  }

  function deliveriesSection(path) {
    const chartSlot = el("div");
    const log = el("div");
    const refresh = () => {
      replace(chartSlot, loader(() => lastDay(path), chart));
      replace(log, loader(() => api("GET", path + "/deliveries?limit=20"), (page) => attemptTable(path, page)));
    };
    refresh();
    return el("section", { class: "card", id: "deliveries" },
      el("div", { class: "bar" }, el("h2", {}, "Deliveries"),
        el("button", { type: "button", class: "secondary", id: "refresh-deliveries", on: { click: refresh } }, "Refresh")),
      chartSlot, log);
  }

  function attemptTable(path, first) {
    if (first.data.length === 0) return el("p", { class: "empty" }, "No delivery attempts yet. Send a test event to try the endpoint.");
    const rows = el("tbody");
    const more = el("p");
    const fill = (page) => {
      for (const a of page.data) {
        rows.append(el("tr", { "data-attempt": a.id },
          el("td", {}, el("code", {}, a.event_type)),
          el("td", {}, outcomeBadge(a.outcome)),
          el("td", {}, a.status_code ? String(a.status_code) : a.error || "—"),
          el("td", {}, a.duration_ms + " ms"),
          el("td", {}, "#" + a.attempt),
          el("td", {}, time(a.at)),
          el("td", {}, a.response_excerpt ? el("code", { class: "excerpt" }, a.response_excerpt) : el("span", { class: "muted" }, "—"))));
      }
      replace(more, page.next_cursor
        ? el("button", { type: "button", class: "secondary", on: { click: () => api("GET", path + "/deliveries?limit=20&cursor=" + encodeURIComponent(page.next_cursor)).then(fill, (e) => toast(e.message, "bad")) } }, "Load more")
        : null);
    };
    fill(first);
    return [el("div", { class: "scroll" }, el("table", { class: "log", id: "delivery-log" },
      el("caption", { class: "sr" }, "Delivery attempts, newest first"),
      el("thead", {}, el("tr", {}, ["Event", "Outcome", "Status", "Duration", "Attempt", "When", "Response"].map((t) => el("th", { scope: "col" }, t)))),
      rows)), more];
  }

  // ---- Failed and parked events --------------------------------------------

  /** A date-time input read and written as UTC, like every time shown. */
  function utcInput(id, label, ms) {
    const input = el("input", { id, type: "datetime-local", step: 1, required: true, value: new Date(ms).toISOString().slice(0, 19) });
    return [el("label", { for: id }, label + " (UTC)"), input];
  }

  function utcValue(input) {
    const ms = Date.parse(input.value + "Z");
    return Number.isNaN(ms) ? null : new Date(ms).toISOString();
  }

  function failedRows(rows, page) {
    for (const e of page.data) {
      const last = e.attempts[e.attempts.length - 1];
      rows.append(el("tr", { "data-key": e.idempotency_key },
        el("td", {}, el("code", {}, e.event_type)),
        el("td", {}, el("span", { class: "badge parked-" + e.status }, e.status)),
        el("td", {}, time(e.arrived_at)),
        el("td", {}, String(e.attempts.length)),
        el("td", {}, last ? (last.status_code ? "HTTP " + last.status_code : last.error || "—") : "—")));
    }
  }

  function failedSection(path) {
    const list = el("div");
    const page = (cursor) => api("GET", path + "/failed-events?limit=20" + (cursor ? "&cursor=" + encodeURIComponent(cursor) : ""));
    const load = () => replace(list, loader(() => page(null), (first) => {
      if (first.data.length === 0) return el("p", { class: "empty" }, "No failed or parked events.");
      const rows = el("tbody");
      const more = el("p");
      const fill = (p) => {
        failedRows(rows, p);
        replace(more, p.next_cursor
          ? el("button", { type: "button", class: "secondary", on: { click: () => page(p.next_cursor).then(fill, (e) => toast(e.message, "bad")) } }, "Load more")
          : null);
      };
      fill(first);
      return [el("div", { class: "scroll" }, el("table", { class: "log", id: "failed-events" },
        el("caption", { class: "sr" }, "Failed and parked events, newest first"),
        el("thead", {}, el("tr", {}, ["Event", "Status", "Happened", "Attempts", "Last result"].map((t) => el("th", { scope: "col" }, t)))),
        rows)), more];
    }));
    // By default the whole retention: an event whose last retry failed
    // a day after it happened is still in its window.
    const known = Number.isInteger(settings.parked_retention_days) && settings.parked_retention_days > 0;
    const days = known ? settings.parked_retention_days : DEFAULT_RETENTION_DAYS;
    const end = Math.floor((Date.now() + 60000) / 1000) * 1000;
    const [sinceLabel, since] = utcInput("recover-since", "From", end - days * DAY_MS);
    const [untilLabel, until] = utcInput("recover-until", "Until", end);
    const submit = el("button", { type: "submit" }, "Recover");
    const form = el("form", { class: "recover", id: "recover-form", "aria-describedby": "recover-window-hint" },
      sinceLabel, since, untilLabel, until, submit,
      el("p", { class: "hint", id: "recover-window-hint" },
        "The window selects events by when they happened (the event's timestamp), not by when they failed. It starts as the whole retention: the last " +
        days + " days" + (known ? "." : " (the default retention; this API did not say its own).")));
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const span = { since: utcValue(since), until: utcValue(until) };
      if (!span.since || !span.until) {
        toast("Enter both times of the window.", "bad");
        return;
      }
      submit.disabled = true;
      submit.textContent = "Recovering…";
      let total = 0;
      let left = 0;
      try {
        let continuation = null;
        do {
          const body = Object.assign({}, span);
          if (continuation) body.continuation = continuation;
          const r = await api("POST", path + "/recover", body);
          total += r.recovered;
          left = r.not_recovered;
          continuation = r.continuation;
        } while (continuation && left === 0);
        toast(total + " event(s) queued for delivery again" + (left ? "; " + left + " could not be queued, recover again" : "") + ".", left ? "bad" : "good");
        load();
      } catch (err) {
        toast("Recover failed after " + total + " event(s): " + err.message, "bad");
      } finally {
        submit.disabled = false;
        submit.textContent = "Recover";
      }
    });
    load();
    return el("section", { class: "card", id: "failed" },
      el("h2", {}, "Failed and parked events"),
      el("p", { class: "hint" }, "Events held while the endpoint was failing, or whose every attempt failed. Recover sends those of a time window again."),
      form, list);
  }

  // ---- Event catalogue -----------------------------------------------------

  function catalogueView() {
    return [
      el("h1", {}, "Event catalogue"),
      el("p", {}, "Every webhook is a POST with a JSON body, signed with the Standard Webhooks scheme: headers ",
        el("code", {}, "webhook-id"), ", ", el("code", {}, "webhook-timestamp"), " and ", el("code", {}, "webhook-signature"), "."),
      el("section", { class: "card" }, el("h2", {}, "Verifying signatures"),
        el("p", {}, "Use the endpoint's ", el("code", {}, "whsec_"), " secret (shown when the endpoint is created or its secret rotated) with a Standard Webhooks library:"),
        snippetTabs(null, "catalogue-snippet")),
      loader(() => api("GET", "/event-types"), (types) => catalogueGroups(types.data).map((g) =>
        el("section", { class: "event-group", id: "group-" + g.name.replace(/\W/g, "-"), "data-group": g.name },
          el("h2", {}, GROUP_TITLES[g.name] || g.name, " ", el("span", { class: "muted" }, "(" + g.name + ".*, " + g.types.length + ")")),
          g.types.map(eventCard)))),
    ];
  }

  /** Headings of the catalogue's known groups; others show their name. */
  const GROUP_TITLES = {
    job: "Job state changes",
    webhook: "Test events",
    app: "App events",
    engine: "Engine events",
    subject: "Subject and verb events",
  };

  /** The event types by group, groups in catalogue order. */
  function catalogueGroups(types) {
    const groups = [];
    for (const t of types) {
      let group = groups.find((g) => g.name === t.group);
      if (!group) groups.push(group = { name: t.group, types: [] });
      group.types.push(t);
    }
    return groups;
  }

  function eventCard(t) {
    return el("details", { class: "card event" + (t.deprecated ? " deprecated" : ""), id: "event-" + t.name.replace(/\W/g, "-") },
      el("summary", {}, el("code", {}, t.name), " ",
        t.deprecated && el("span", { class: "badge deprecated", title: "Still sent, but on its way out" }, "deprecated"), " ",
        el("span", { class: "muted" }, t.description)),
      t.requires.length > 0 && el("p", { class: "hint requires" }, "Its events always carry ",
        t.requires.map((r, i) => [i > 0 ? ", " : "", el("code", {}, REQUIRED_FIELDS[r] || r)]), "."),
      el("h3", {}, "Example"), formatSwitch(t),
      el("h3", {}, "JSON Schema"), el("pre", { class: "code", tabindex: "0" }, JSON.stringify(t.schema, null, 2)));
  }

  /** An event type's example with a switch of the built-in formats: the
   * standard payload as the catalogue has it, the others as the preview
   * route renders them (each asked for once). */
  function formatSwitch(t) {
    const slug = "event-" + t.name.replace(/\W/g, "-");
    const pre = el("pre", { class: "code", id: slug + "-example", tabindex: "0" });
    const problem = el("p", { class: "error", role: "status", hidden: true });
    const note = el("p", { class: "hint", hidden: true }, "A PagerDuty routing key shows masked; the endpoint's own is sent.");
    const tabs = el("div", { role: "tablist", class: "tabs format-switch", "aria-label": "Body format of " + t.name });
    const rendered = { standard: Promise.resolve({ body: t.example }) };
    let current = null;
    const show = (type) => {
      current = type;
      for (const b of tabs.children) b.setAttribute("aria-selected", String(b.dataset.format === type));
      note.hidden = type !== "pagerduty";
      pre.setAttribute("aria-busy", "true");
      if (!rendered[type]) {
        rendered[type] = preview({ type }, t.name);
        // A failure is asked again on the next click.
        rendered[type].catch(() => { delete rendered[type]; });
      }
      rendered[type].then(
        (r) => {
          if (current !== type) return;
          problem.hidden = true;
          pre.hidden = false;
          pre.textContent = pretty(r.body);
          pre.dataset.format = type;
          pre.removeAttribute("aria-busy");
        },
        (e) => {
          if (current !== type) return;
          problem.textContent = e.message;
          problem.hidden = false;
          pre.hidden = true;
          pre.removeAttribute("aria-busy");
        });
    };
    for (const f of FORMATS.filter((f) => f.value !== "template")) {
      tabs.append(el("button", { type: "button", role: "tab", "data-format": f.value, "aria-controls": slug + "-example", on: { click: () => show(f.value) } }, f.label));
    }
    // The example shows at once, as the standard payload.
    pre.textContent = pretty(t.example);
    pre.dataset.format = "standard";
    for (const b of tabs.children) b.setAttribute("aria-selected", String(b.dataset.format === "standard"));
    current = "standard";
    return el("div", { class: "formats" }, tabs, note, problem, pre);
  }

  /** The payload field of each context attribute an event type requires. */
  const REQUIRED_FIELDS = { appid: "app_id", subject: "subject_id", subjecttype: "subject_type", verb: "verb" };

  // ---- Routing -------------------------------------------------------------

  let settings = null;

  function render(problem) {
    const t = token();
    const signOutButton = document.getElementById("sign-out");
    const who = document.getElementById("who");
    if (!t) {
      signOutButton.hidden = true;
      who.textContent = "";
      replace(main, signInView(problem));
      return;
    }
    const c = claims(t) || {};
    signOutButton.hidden = false;
    who.textContent = c.sub || "";
    const route = location.hash.replace(/^#/, "").split("?")[0] || "/";
    for (const a of document.querySelectorAll("[data-nav]")) {
      a.toggleAttribute("aria-current", (a.dataset.nav === "events") === route.startsWith("/events"));
    }
    let m;
    const decode = (part) => {
      try {
        return decodeURIComponent(part);
      } catch {
        return null;
      }
    };
    if (route === "/") replace(main, listView());
    else if (route === "/new") replace(main, formView(null));
    else if (route === "/events") replace(main, catalogueView());
    else if ((m = route.match(/^\/webhooks\/([^/]+)\/edit$/)) && decode(m[1]) !== null) {
      const id = decode(m[1]);
      replace(main, loader(() => api("GET", "/webhooks/" + encodeURIComponent(id)), (sub) => formView(sub)));
    } else if ((m = route.match(/^\/webhooks\/([^/]+)$/)) && decode(m[1]) !== null) replace(main, detailView(decode(m[1])));
    else replace(main, el("p", { class: "error" }, "No such page. ", el("a", { href: "#/" }, "Back to the endpoints")));
    main.focus({ preventScroll: true });
  }

  /** Loads the settings, completes a sign-in in progress, then renders
   * and follows the address. */
  async function start() {
    try {
      settings = await (await fetch(location.pathname.replace(/\/?$/, "") + "/config.json")).json();
    } catch {
      settings = { oidc: null };
    }
    let problem = null;
    if (settings.oidc) {
      try {
        await finishSignIn(settings.oidc);
      } catch (e) {
        problem = e.message;
      }
    }
    problem = (await signInFromAddress()) || problem;
    window.addEventListener("hashchange", async () => render(await signInFromAddress()));
    render(problem);
  }

  document.getElementById("sign-out").addEventListener("click", signOut);
  start();
})();

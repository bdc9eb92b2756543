// The developer card viewer. It talks to the service exactly as an EHR does (GET /cds-services,
// POST /cds-services/{id}); the viewer/ endpoints only list fixtures and turn files into requests.
//
// Everything shown comes from the service or a pasted file, so it is treated as untrusted: text goes
// in with textContent / createTextNode, Markdown through vcfMarkdown (which builds elements itself),
// URLs through vcfMarkdown.safeUrl. No innerHTML anywhere (the page's CSP would make it throw).
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const EXTENSION = "org.vcfcds";
  const state = { services: [], expected: null };

  /** A new element: props are a few known DOM properties; strings among children become text. */
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === undefined || value === null) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("data-")) node.setAttribute(key, String(value));
      else if (["type", "title", "value", "disabled", "colSpan"].includes(key)) node[key] = value;
      else throw new Error("el(): unexpected property " + key);
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(typeof child === "string" ? document.createTextNode(child) : child);
    }
    return node;
  }

  function externalLink(url, label) {
    const href = window.vcfMarkdown.safeUrl(url);
    if (!href) return el("span", { title: "not an http(s) link: " + url }, label);
    const a = el("a", {}, label);
    a.href = href;
    a.rel = "noopener noreferrer";
    a.target = "_blank";
    return a;
  }

  function pretty(value) {
    return JSON.stringify(value, null, 2);
  }

  // ---- status and errors ---------------------------------------------------------------------------

  function showError(message) {
    const box = $("error");
    box.replaceChildren();
    if (message) box.append(el("strong", {}, "Error: "), message);
    box.hidden = !message;
  }

  function setStatus(text) {
    $("status").textContent = text;
  }

  /** The message of an OperationOutcome body, else the raw text. */
  function outcomeMessage(status, body, text) {
    if (body && body.resourceType === "OperationOutcome" && Array.isArray(body.issue)) {
      const messages = body.issue.map((i) => i.diagnostics || i.details?.text || i.code).filter(Boolean);
      return "HTTP " + status + ": " + (messages.join("; ") || "OperationOutcome without diagnostics");
    }
    return "HTTP " + status + ": " + (text || "(empty body)").slice(0, 500);
  }

  /** fetch → {status, body, text, ms}; network failures become a thrown Error with a message. */
  async function call(url, options) {
    const started = performance.now();
    let response;
    try {
      response = await fetch(url, options);
    } catch (e) {
      throw new Error("the service did not answer (" + e.message + ")");
    }
    const text = await response.text();
    let body = null;
    try {
      body = text ? JSON.parse(text) : null;
    } catch (e) {
      body = null;
    }
    return { status: response.status, ok: response.ok, body: body, text: text, ms: performance.now() - started };
  }

  function postJson(url, text) {
    return call(url, { method: "POST", headers: { "Content-Type": "application/json" }, body: text });
  }

  // ---- services (discovery) ------------------------------------------------------------------------

  async function loadServices() {
    const r = await call("cds-services");
    if (!r.ok || !r.body || !Array.isArray(r.body.services)) {
      showError("discovery failed: " + outcomeMessage(r.status, r.body, r.text));
      return;
    }
    state.services = r.body.services;
    const select = $("service");
    select.replaceChildren(
      ...state.services.map((s) => el("option", { value: s.id }, s.id + " (" + s.hook + ")"))
    );
    $("services").replaceChildren(
      ...state.services.map((s) =>
        el(
          "li",
          { "data-service": s.id },
          el("code", {}, s.id),
          " ",
          el("span", { class: "hook" }, s.hook),
          " ",
          el("strong", {}, s.title || ""),
          s.description ? el("div", { class: "muted" }, s.description) : null,
          s.prefetch ? el("div", { class: "muted" }, "prefetch: " + Object.keys(s.prefetch).join(", ")) : null
        )
      )
    );
  }

  function serviceById(id) {
    return state.services.find((s) => s.id === id);
  }

  // Choosing a service sets the request's hook to that service's hook (the rest is the user's).
  function onServiceChange() {
    const service = serviceById($("service").value);
    const request = parseRequest(false);
    if (service && request && request.hook !== service.hook) {
      request.hook = service.hook;
      $("request").value = pretty(request);
    }
  }

  // ---- fixtures and pasted input -------------------------------------------------------------------

  async function loadFixtures() {
    const r = await call("viewer/fixtures");
    const select = $("fixture");
    if (!r.ok || !r.body) {
      showError("cannot list fixtures: " + outcomeMessage(r.status, r.body, r.text));
      return;
    }
    const groups = new Map();
    for (const f of r.body.fixtures) {
      const folder = f.name.includes("/") ? f.name.slice(0, f.name.lastIndexOf("/")) : ".";
      if (!groups.has(folder)) groups.set(folder, el("optgroup", {}));
      groups.get(folder).label = folder;
      const option = el("option", { value: f.name, title: f.description || f.error || "" }, f.name.slice(folder.length + 1) || f.name);
      if (f.error) option.disabled = true;
      groups.get(folder).append(option);
    }
    select.replaceChildren(el("option", { value: "" }, r.body.fixtures.length ? "— choose a fixture —" : "— no fixtures folder —"), ...groups.values());
  }

  function shiftQuery() {
    return $("shift").checked ? "?shift=1" : "?shift=0";
  }

  async function onFixtureChange() {
    const name = $("fixture").value;
    if (!name) return;
    const path = name.split("/").map(encodeURIComponent).join("/");
    const r = await call("viewer/fixtures/" + path + shiftQuery());
    usePrepared(r, name);
  }

  async function onUsePasted() {
    const text = $("paste").value.trim();
    if (!text) {
      showError("paste a FHIR Bundle, a CDS Hooks request or a fixture first");
      return;
    }
    $("fixture").value = "";
    usePrepared(await postJson("viewer/prepare" + shiftQuery(), text), "pasted JSON");
  }

  /** Show what /viewer/fixtures/… or /viewer/prepare answered: the request to send and what to expect. */
  function usePrepared(r, label) {
    clearResult();
    if (!r.ok || !r.body) {
      showError(outcomeMessage(r.status, r.body, r.text));
      return;
    }
    showError("");
    const p = r.body;
    state.expected = p.expected || null;
    $("request").value = pretty(p.request);
    if (p.service && serviceById(p.service)) $("service").value = p.service;
    onServiceChange();
    const about = [el("strong", {}, label)];
    if (p.description) about.push(el("p", { class: "description" }, p.description));
    if (p.now) {
      about.push(
        el(
          "p",
          { class: "muted" },
          p.shiftedDays
            ? "True at " + p.now + "; every date moved " + p.shiftedDays + " days so the record is as old today as then."
            : "True at " + p.now + (($("shift").checked) ? "." : "; dates not moved, so the service judges them at today's date.")
        )
      );
    }
    if (state.expected) about.push(el("p", { class: "muted" }, "Expected: " + describeExpected(state.expected)));
    $("about").replaceChildren(...about);
    setStatus("Ready: press Send.");
  }

  function describeExpected(expected) {
    const cards = expected.cards || [];
    if (!cards.length) return "no card";
    return cards
      .map((c) => [c.kind, c.recommendation, c.referral, c.indicator].filter(Boolean).join(" · "))
      .join("; ");
  }

  // ---- sending and rendering -----------------------------------------------------------------------

  function parseRequest(report) {
    try {
      return JSON.parse($("request").value);
    } catch (e) {
      if (report) showError("the request is not valid JSON: " + e.message);
      return null;
    }
  }

  function clearResult() {
    $("cards").replaceChildren();
    $("check").replaceChildren();
    $("check").hidden = true;
    $("response").textContent = "";
    setStatus("");
  }

  async function onSend() {
    clearResult();
    showError("");
    const service = $("service").value;
    if (!service) {
      showError("no CDS service to call (discovery listed none)");
      return;
    }
    if (!parseRequest(true)) return;
    setStatus("Calling POST /cds-services/" + service + " …");
    let r;
    try {
      r = await postJson("cds-services/" + encodeURIComponent(service), $("request").value);
    } catch (e) {
      showError(e.message);
      setStatus("");
      return;
    }
    $("response").textContent = r.body ? pretty(r.body) : r.text;
    setStatus("POST /cds-services/" + service + " → HTTP " + r.status + " in " + r.ms.toFixed(0) + " ms");
    if (!r.ok || !r.body || !Array.isArray(r.body.cards)) {
      showError(outcomeMessage(r.status, r.body, r.text));
      return;
    }
    renderCards(r.body.cards);
    if (state.expected) await checkExpected(r.body.cards);
  }

  async function checkExpected(cards) {
    const r = await postJson("viewer/check", JSON.stringify({ cards: cards, expected: state.expected }));
    const box = $("check");
    box.hidden = false;
    if (!r.ok || !r.body) {
      box.className = "check check--fail";
      box.replaceChildren(outcomeMessage(r.status, r.body, r.text));
      return;
    }
    const problems = r.body.problems;
    box.className = problems.length ? "check check--fail" : "check check--ok";
    box.replaceChildren(
      el("strong", {}, problems.length ? "Does not match the fixture's expected result" : "Matches the fixture's expected result")
    );
    if (problems.length) box.append(el("ul", {}, problems.map((p) => el("li", {}, p))));
  }

  function renderCards(cards) {
    const box = $("cards");
    if (!cards.length) {
      box.replaceChildren(el("p", { class: "no-cards" }, "No cards: the service has nothing to say for this patient."));
      return;
    }
    box.replaceChildren(...cards.map(renderCard));
  }

  function renderCard(card) {
    const indicator = ["info", "warning", "critical"].includes(card.indicator) ? card.indicator : "info";
    const detail = el("div", { class: "detail markdown" });
    detail.append(window.vcfMarkdown.render(card.detail || ""));
    decorateStatuses(detail);
    const actions = el("pre", { class: "actions" });
    actions.hidden = true;
    return el(
      "article",
      { class: "card card--" + indicator, "data-indicator": indicator },
      el(
        "header",
        {},
        el("span", { class: "indicator indicator--" + indicator }, indicator.toUpperCase()),
        el("h3", { class: "summary" }, card.summary || "")
      ),
      renderSource(card.source),
      detail,
      renderSuggestions(card, actions),
      actions,
      renderLinks(card.links),
      renderOverride(card.overrideReasons),
      renderAssessment((card.extension || {})[EXTENSION])
    );
  }

  // The card's Markdown says a criterion's status in words that every font has ("Met", "Not met",
  // "Unknown"); colouring them is the viewer's own decoration, an EHR shows the words as they are.
  const STATUS_WORDS = { met: "met", "not met": "not-met", unknown: "unknown" };

  function decorateStatuses(detail) {
    for (const cell of detail.querySelectorAll("td")) {
      const status = STATUS_WORDS[cell.textContent.trim().toLowerCase()];
      if (status) cell.classList.add("status", "status--" + status);
    }
  }

  function renderSource(source) {
    if (!source) return null;
    const label = source.label || "";
    return el(
      "div",
      { class: "source muted" },
      "Source: ",
      source.url ? externalLink(source.url, label) : label,
      source.topic && source.topic.display ? " · " + source.topic.display : ""
    );
  }

  // Suggestions are buttons, as in an EHR; the viewer does not place orders, it shows what accepting
  // would create.
  function renderSuggestions(card, actions) {
    const suggestions = card.suggestions || [];
    if (!suggestions.length) return null;
    return el(
      "div",
      { class: "suggestions" },
      suggestions.map((s) => {
        const button = el(
          "button",
          { type: "button", class: s.isRecommended ? "suggestion recommended" : "suggestion", title: "show what accepting would create" },
          s.label || "(no label)"
        );
        button.addEventListener("click", () => {
          actions.hidden = false;
          actions.textContent = "Accepting “" + (s.label || "") + "” would send:\n" + pretty(s.actions || []);
        });
        return button;
      }),
      card.selectionBehavior ? el("span", { class: "muted" }, " selection: " + card.selectionBehavior) : null
    );
  }

  function renderLinks(links) {
    if (!links || !links.length) return null;
    return el(
      "ul",
      { class: "links" },
      links.map((l) => el("li", {}, externalLink(l.url, l.label || l.url), l.type === "smart" ? " (SMART app)" : ""))
    );
  }

  function renderOverride(reasons) {
    if (!reasons || !reasons.length) return null;
    return el(
      "details",
      { class: "override" },
      el("summary", {}, "Override reasons"),
      el("ul", {}, reasons.map((r) => el("li", {}, (r.display || r.code || "") + (r.code ? " (" + r.code + ")" : ""))))
    );
  }

  function renderAssessment(a) {
    if (!a) return null;
    const facts = [
      ["kind", a.kind],
      ["recommendation", a.recommendation],
      ["referral", a.referral],
      ["pathway", a.pathway],
      ["procedure", a.procedure],
      ["order appropriate", a.orderAppropriate === undefined ? null : String(a.orderAppropriate)],
    ].filter(([, v]) => v !== null && v !== undefined);
    const rows = (a.criteria || []).map((c) =>
      el(
        "tr",
        { "data-criterion": c.id },
        el("td", {}, el("code", {}, c.id || "")),
        el("td", { class: "status status--" + (c.status || "unknown") }, c.status || ""),
        el("td", {}, (c.evidence || []).join(", ") || "—"),
        el("td", {}, c.source || "")
      )
    );
    return el(
      "section",
      { class: "assessment" },
      el("h4", {}, "Assessment"),
      el("div", { class: "chips" }, facts.map(([k, v]) => el("span", { class: "chip" }, k + ": " + v))),
      a.cautions && a.cautions.length ? el("p", {}, el("strong", {}, "Cautions: "), a.cautions.join(", ")) : null,
      a.missing && a.missing.length ? el("p", {}, el("strong", {}, "Missing: "), a.missing.join(", ")) : null,
      rows.length
        ? el(
            "table",
            { class: "criteria" },
            el("thead", {}, el("tr", {}, ["Criterion", "Status", "Evidence", "Source"].map((h) => el("th", {}, h)))),
            el("tbody", {}, rows)
          )
        : null,
      a.rulesVersion ? el("p", { class: "muted" }, "rules " + a.rulesVersion) : null
    );
  }

  // ---- start ---------------------------------------------------------------------------------------

  document.addEventListener("DOMContentLoaded", async () => {
    $("fixture").addEventListener("change", onFixtureChange);
    $("use-paste").addEventListener("click", onUsePasted);
    $("service").addEventListener("change", onServiceChange);
    $("send").addEventListener("click", onSend);
    $("request").addEventListener("keydown", (e) => {
      if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) onSend();
    });
    try {
      await Promise.all([loadServices(), loadFixtures()]);
    } catch (e) {
      showError(e.message);
    }
    document.body.dataset.ready = "true"; // tests wait for this
  });
})();

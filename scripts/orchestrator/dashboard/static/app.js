// orch dashboard: one page, no build step, no network but its own server.
//
// Data flow: the stream (/api/sessions/ID/stream) pushes snapshots (session, agent) and
// events; every message lands in an inbox, and one requestAnimationFrame applies the
// whole inbox at once, so a burst of a thousand lines costs one layout, not a thousand.
// History is paged: the page loads the newest events, and each log pane fetches older
// ones only when asked. Log panes keep at most PANE_CAP lines in the DOM.
// Text from agents is only ever set with textContent: it is data, never markup.
"use strict";

const PANE_CAP = 300;           // lines kept per log pane (more on "older")
const FIRST_PAGE = 1000;        // events loaded before the stream starts
const OLDER_PAGE = 200;         // events per "older" click
const INBOX_FLUSH_AT = 20000;   // a hidden tab gets no animation frames: flush anyway past this
const LINE_CHARS = 2000;        // longer event text is cut in the DOM (the API has it whole)
const ALERTS_SHOWN = 8;         // named in the banner; the rest are marked on their cards
const LIVE = new Set(["starting", "running", "silent"]);
const ATTENTION = new Set(["denied", "blocked-by-policy", "silent", "failed"]);
const MARKS = {
  "denied": "⊘ DENIED",
  "blocked-by-policy": "⊘ BLOCKED BY POLICY",
  "silent": "‖ SILENT",
  "failed": "✖ FAILED",
};
const SESSION_PANE = "session";

const $ = (id) => document.getElementById(id);

const state = {
  sessionId: null,
  folderDefault: null,  // the session commands in the served folder act on by default
  token: null,
  session: null,
  agents: new Map(),      // id -> card data
  cards: new Map(),       // id -> {root, fields}
  panes: new Map(),       // pane key -> {root, lines, count, cap, oldest, exhausted}
  inbox: {session: null, agents: new Map(), events: []},
  flushQueued: false,
  source: null,
  lastEventId: null,
  startFrom: null,
  reconnectTimer: null,
  roundsKey: "",
  blockersKey: "",
  panelKey: "",
};

// ------------------------------------------------------------------ helpers

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined && text !== null) node.textContent = text;
  return node;
}

function naturalCompare(a, b) {
  return a.localeCompare(b, undefined, {numeric: true, sensitivity: "base"});
}

function clock(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return isNaN(d) ? "" : d.toLocaleTimeString([], {hour12: false});
}

function ago(iso) {
  if (!iso) return "—";
  const s = Math.max(0, Math.round((Date.now() - new Date(iso).getTime()) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s ago`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min ago`;
}

function tokens(n) {
  if (n >= 1e6) return (n / 1e6).toFixed(1) + "M";
  if (n >= 1e3) return (n / 1e3).toFixed(1) + "k";
  return String(n);
}

function money(x) {
  return "$" + (x || 0).toFixed(x >= 1 ? 2 : 4);
}

// A cost as people read it: estimated costs (the CLI reported none) say so; a model
// without a known price says "price unknown", never $0.
function costText(u) {
  if (u.price_known === false) return u.cost_usd ? `${money(u.cost_usd)} + price unknown` : "price unknown";
  return u.cost_estimated ? `~${money(u.cost_usd)} (estimated)` : money(u.cost_usd);
}

function cut(text) {
  text = text == null ? "" : String(text);
  return text.length > LINE_CHARS ? text.slice(0, LINE_CHARS) + " …" : text;
}

let toastTimer = null;
function toast(message, bad) {
  const t = $("toast");
  t.textContent = message;
  t.dataset.bad = bad ? "1" : "";
  t.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { t.hidden = true; }, 6000);
}

async function getJSON(url) {
  const r = await fetch(url, {headers: {"Accept": "application/json"}, cache: "no-store"});
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(body.error || `${r.status} ${r.statusText}`);
  return body;
}

// ------------------------------------------------------------------ the session and its token

function readToken() {
  // The link `orch serve` prints carries the workspace's token in the fragment, which never
  // leaves the browser; keep it for this tab (every session of the workspace takes it) and
  // take it out of the address bar.
  const hash = new URLSearchParams(location.hash.slice(1));
  const key = "orch-token";
  if (hash.get("token")) {
    sessionStorage.setItem(key, hash.get("token"));
    history.replaceState(null, "", location.pathname + location.search);
  }
  return sessionStorage.getItem(key);
}

function pickerLabel(s) {
  // The session's state, and whether it is the one commands in this folder act on by default
  // (said in other words than its state: "active (active)" said nothing).
  const mark = s.id === state.folderDefault ? " · this folder's session" : "";
  return `${s.id} — ${s.state}${mark} — ${s.goal || "no goal"}`;
}

async function chooseSession() {
  const [info, sessions] = await Promise.all([getJSON("/api/server"), getJSON("/api/sessions")]);
  const wanted = new URLSearchParams(location.search).get("session");
  const ids = sessions.map((s) => s.id);
  const picked = ids.includes(wanted) ? wanted : (ids.includes(info.default_session) ? info.default_session : ids[0]);
  const picker = $("session-picker");
  picker.replaceChildren();
  for (const s of sessions) {
    state.folderDefault = s.active ? s.id : state.folderDefault;
    const opt = el("option", null, pickerLabel(s));
    opt.value = s.id;
    opt.selected = s.id === picked;
    picker.append(opt);
  }
  picker.onchange = () => {
    location.search = "?session=" + encodeURIComponent(picker.value);
  };
  return picked || null;
}

// ------------------------------------------------------------------ the inbox and the frame

function queueFlush() {
  const pending = state.inbox.events.length;
  if (pending >= INBOX_FLUSH_AT) {
    flush();
    return;
  }
  if (!state.flushQueued) {
    state.flushQueued = true;
    requestAnimationFrame(flush);
  }
}

function flush() {
  state.flushQueued = false;
  const inbox = state.inbox;
  state.inbox = {session: null, agents: new Map(), events: []};
  if (inbox.session) renderSession(inbox.session);
  for (const card of inbox.agents.values()) renderAgent(card);
  if (inbox.agents.size) renderTeamSummary();
  if (inbox.agents.size && state.session && state.session.panel) renderPanel(state.session.panel);  // its costs
  if (inbox.events.length) appendEvents(inbox.events, false);
}

// ------------------------------------------------------------------ session header, rounds, ledger

function renderSession(s) {
  state.session = s;
  const option = [...$("session-picker").options].find((o) => o.value === s.id);
  if (option) option.textContent = pickerLabel(s);  // the picker says the state the badge says
  const badge = $("session-state");
  badge.textContent = s.state;
  badge.dataset.state = s.state;
  $("session-round").textContent = `round ${s.round} of ${s.max_rounds}`;
  $("session-goal").textContent = s.goal || "—";
  $("todo").textContent = s.todo || "none reported (Claude Code's conductor reports its current step here)";
  $("todo").dataset.empty = s.todo ? "" : "1";
  const stop = $("stop-reason");
  stop.hidden = !s.stop_reason || s.state === "paused";  // a paused session has its own banner
  stop.textContent = s.stop_reason ? `${s.state === "paused" ? "Paused" : "Stopped"}: ${s.stop_reason}` : "";
  document.title = `orch · ${s.state} · ${s.goal || s.id}`;
  const v = s.verification;  // the project's tests on the integration branch (the verification gate)
  $("tests-line").hidden = !v || !v.final;
  if (v && v.final) {
    const runs = v.runs.length ? ` · ${v.runs.length} run(s), last ${v.runs[v.runs.length - 1].id}` : "";
    $("tests-result").textContent = v.final + runs;
    $("tests-result").dataset.failing = /FAILS|not run/.test(v.final) ? "1" : "";
  }
  const roundsKey = JSON.stringify([s.rounds, s.round, s.tasks.map((t) => [t.round, t.state, t.waiting]),
    s.git && s.git.merges]);
  if (roundsKey !== state.roundsKey) {
    state.roundsKey = roundsKey;
    renderRounds(s);
  }
  const blockersKey = JSON.stringify(s.blockers);
  if (blockersKey !== state.blockersKey) {
    state.blockersKey = blockersKey;
    renderBlockers(s.blockers);
  }
  const panelKey = JSON.stringify([s.panel, s.races]);
  if (panelKey !== state.panelKey) {
    state.panelKey = panelKey;
    renderPanel(s.panel);
    renderRaces(s.races || []);
  }
  for (const [id, card] of state.agents) fillTask(state.cards.get(id), card);
  loadBudget();
}

// ------------------------------------------------------------------ budget: spend against limits, raising one

let budgetPending = null;

function loadBudget() {
  // the session frame arrives often: one request in flight at a time
  if (budgetPending || !state.sessionId) return;
  budgetPending = getJSON(`/api/sessions/${encodeURIComponent(state.sessionId)}/budget`)
    .then(renderBudget).catch(() => {}).finally(() => { budgetPending = null; });
}

function renderBudget(b) {
  const line = $("budget-line");
  line.hidden = b.limits.length === 0;
  $("budget-spend").textContent = b.limits.map((l) => `${l.text} (${Math.round(l.share * 100)}%)` +
    (l.reached ? " — reached" : "")).join(" · ");
  const paused = b.state === "paused";
  $("budget-paused").hidden = !paused;
  $("budget-reason").textContent = paused ? `Paused: ${b.reason}` : "";
  const raise = $("budget-raise");
  raise.disabled = !state.token;
  raise.title = state.token ? "" : "needs the token from the link `orch serve` printed";
  const input = $("budget-value");
  const usd = b.limits.find((l) => l.key === "session_usd");
  if (paused && usd && !input.value) input.value = String(Math.max(usd.limit * 2, usd.spent * 1.5).toFixed(4));
}

async function raiseBudget() {
  const button = $("budget-raise");
  const value = $("budget-value").value;
  if (!state.token || !value) return;
  button.disabled = true;
  try {
    const r = await fetch(`/api/sessions/${encodeURIComponent(state.sessionId)}/budget?key=session_usd&value=` +
      encodeURIComponent(value), {
      method: "POST", headers: {"X-Orch-Token": state.token, "Accept": "application/json"}, cache: "no-store",
    });
    const body = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(body.error || `${r.status}`);
    toast(body.changes.join("; ") + " — the session continues at its next step");
    renderBudget(body.budget);
  } catch (e) {
    toast(`raising the budget failed — ${e.message}`, true);
  } finally {
    button.disabled = !state.token;
  }
}

function renderRounds(s) {
  const list = $("rounds");
  list.replaceChildren();
  $("rounds-empty").hidden = s.rounds.length > 0;
  for (const r of s.rounds) {
    const tasks = s.tasks.filter((t) => t.round === r.n);
    const done = tasks.filter((t) => t.state === "done").length;
    const li = el("li", "round");
    li.dataset.current = r.n === s.round && !r.ended_at ? "1" : "";
    li.dataset.phase = r.phase;
    li.append(el("span", "round-n", `Round ${r.n}`), el("span", "badge phase", r.phase));
    const when = r.ended_at ? `${clock(r.started_at)} – ${clock(r.ended_at)}` : `since ${clock(r.started_at)}`;
    li.append(el("span", "muted", when));
    li.append(el("span", "muted", `tasks ${done}/${tasks.length} done`));
    if (r.note) li.append(el("div", "note", r.note));
    for (const t of tasks.filter((t) => t.state === "queued" && t.waiting)) {
      li.append(el("div", "note waiting", `${t.id} ${t.waiting}`));  // held back by a concurrency cap
    }
    for (const m of ((s.git && s.git.merges) || []).filter((m) => tasks.some((t) => t.id === m.task))) {
      const what = m.outcome === "conflict" ? `conflict in ${m.files.join(", ")} → ${m.merge_task || "merge task"}`
        : `merged into ${s.git.integration_branch}${m.commit ? " at " + m.commit.slice(0, 12) : ""}`;
      li.append(el("div", m.outcome === "conflict" ? "note waiting" : "note", `${m.task} ${m.agent}: ${what}`));
    }
    list.append(li);
  }
}

function renderBlockers(rows) {
  const table = $("blockers");
  const body = table.tBodies[0];
  body.replaceChildren();
  table.hidden = rows.length === 0;
  $("blockers-empty").hidden = rows.length > 0;
  const open = rows.filter((b) => !b.resolved).length;
  $("blocker-count").textContent = rows.length ? `${open} open of ${rows.length}` : "";
  for (const b of rows) {
    const tr = el("tr");
    tr.dataset.state = b.state;
    tr.dataset.severity = b.severity;
    const filers = (b.filed_by || []).map((f) => f.rule === "first" ? f.reviewer : `${f.reviewer} (${f.rule})`);
    tr.append(el("td", "mono", b.id), el("td", "sev", b.severity), el("td", "mono", b.location || "—"),
      el("td", null, b.description), el("td", "small filers", filers.join(", ") || (b.source === "verification" ? "tests" : "—")),
      el("td", "bstate", b.state), el("td", "muted small", b.path));
    body.append(tr);
  }
}

// ------------------------------------------------------------------ review panel and races

// The panel's verdicts side by side: one column per reviewer, one row per measure.
function renderPanel(p) {
  $("panel-section").hidden = !p;
  if (!p) return;
  const table = $("panel");
  const head = table.tHead.rows[0];
  head.replaceChildren(el("th", null, ""));
  for (const r of p.reviewers) head.append(el("th", "mono", `${r.reviewer} · ${r.cli}`));
  const body = table.tBodies[0];
  body.replaceChildren();
  const row = (label, cell) => {
    const tr = el("tr");
    tr.append(el("th", "muted", label));
    for (const r of p.reviewers) {
      const td = cell(r);
      tr.append(td);
    }
    body.append(tr);
  };
  for (const round of p.rounds) {
    row(`round ${round}`, (r) => {
      const vs = r.verdicts.filter((v) => v.round === round);
      const td = el("td", "verdict", vs.map((v) => `${v.verdict} (${v.kind}: ${v.blockers.length} blocker(s))`).join("; ") || "—");
      td.dataset.verdict = vs.length ? vs[vs.length - 1].verdict : "";
      return td;
    });
  }
  row("filed", (r) => el("td", null, String(r.filed)));
  row("unique to it", (r) => el("td", null, String(r.unique)));
  row("confirmed by another", (r) => el("td", null, String(r.confirmed)));
  row("later verified", (r) => el("td", null, String(r.verified)));
  row("cost", (r) => {
    const card = state.agents.get(r.reviewer);
    return el("td", null, card ? `${tokens((card.usage.input_tokens || 0) + (card.usage.output_tokens || 0))} tokens, ${costText(card.usage)}` : "—");
  });
  row("left the panel", (r) => el("td", "muted small", r.benched || "—"));
  $("panel-count").textContent = `${p.reviewers.length} reviewers`;
  const rules = Object.entries(p.rules).map(([k, n]) => `${n} by ${k}`).join(", ") || "none";
  $("panel-note").textContent = `${p.reports} report(s) became ${p.ledger} blocker(s) in one ledger ` +
    `(${p.merged} merged as the same problem: ${rules}).`;
}

// Each race's candidates with their test results, best first once judged.
function renderRaces(races) {
  $("races-section").hidden = races.length === 0;
  const box = $("races");
  box.replaceChildren();
  $("races-count").textContent = races.length ? `${races.length}` : "";
  for (const r of races) {
    const section = el("div", "race");
    section.dataset.state = r.state;
    const by = r.decided_by === "person" ? " · picked by a person" : r.decided_by === "judge" ? " · by the judge" : "";
    section.append(el("div", "race-head", `${r.task} ${r.title} — ${r.state}${by}`));
    if (r.why) section.append(el("div", "muted small", r.why));
    const table = el("table", "ledger race-candidates");
    const head = el("tr");
    for (const h of ["rank", "agent", "cli", "build", "tests", "blockers", "lines", "outcome"]) head.append(el("th", null, h));
    table.append(head);
    for (const c of r.candidates) {
      const tr = el("tr");
      tr.dataset.tests = c.tests || "";
      tr.dataset.winner = c.agent && c.agent === r.winner ? "1" : "";
      const tests = (c.tests || "not yet") + (c.failing.length ? ` (${c.failing.slice(0, 3).join(", ")})` : "");
      tr.append(el("td", "mono", c.rank ? String(c.rank) : "—"), el("td", "mono", c.agent || "—"),
        el("td", "mono", c.cli), el("td", "small", c.ended || "building"), el("td", "tests", tests),
        el("td", "blockers", c.blockers === null || c.blockers === undefined ? "—" : String(c.blockers)),
        el("td", null, String(c.lines)), el("td", "small", c.outcome || "—"));
      if (c.reviews && c.reviews.length) tr.title = c.reviews.join("\n");
      table.append(tr);
    }
    section.append(table);
    box.append(section);
  }
}

// ------------------------------------------------------------------ agent cards

function makeCard(id) {
  const root = document.getElementById("card-template").content.firstElementChild.cloneNode(true);
  root.dataset.agent = id;
  root.id = `card-${id}`;
  const q = (sel) => root.querySelector(sel);
  const fields = {
    id: q(".agent-id"), state: q(".state"), mark: q(".mark"), role: q(".role"), cli: q(".cli"),
    reason: q(".reason"), pending: q(".pending"), task: q(".task"), activity: q(".activity"),
    tools: q(".tools"), tokens: q(".tokens"), cost: q(".cost"),
    abort: q(".act-abort"), allow: q(".act-allow"), deny: q(".act-deny"),
  };
  fields.id.textContent = id;
  root.addEventListener("click", (ev) => {
    const button = ev.target.closest("button[data-act]");
    if (button) {
      act(id, button.dataset.act, button);
      return;
    }
    const pane = state.panes.get(id);
    if (pane) pane.root.scrollIntoView({behavior: "smooth", block: "nearest"});
  });
  const entry = {root, fields};
  state.cards.set(id, entry);
  // keep cards in the agents' natural order (worker-2 before worker-10)
  const team = $("team");
  const after = [...team.children].find((c) => naturalCompare(c.dataset.agent, id) > 0);
  team.insertBefore(root, after || null);
  return entry;
}

function fillTask(entry, card) {
  if (!entry) return;
  const task = card.task && state.session ? state.session.tasks.find((t) => t.id === card.task) : null;
  entry.fields.task.textContent = card.task ? (task ? `${card.task} · ${task.title}` : card.task) : "—";
}

function renderAgent(card) {
  state.agents.set(card.id, card);
  const entry = state.cards.get(card.id) || makeCard(card.id);
  const f = entry.fields;
  entry.root.dataset.state = card.state;
  f.state.textContent = card.state;
  f.state.dataset.state = card.state;
  const mark = MARKS[card.state];
  f.mark.hidden = !mark;
  f.mark.textContent = mark || "";
  f.role.textContent = card.role;
  f.cli.textContent = (card.sim_format ? `${card.cli} (${card.sim_format} format)` : card.cli)
    + (card.branch ? ` · ${card.branch}` : "");  // its own git branch (worktree: card.cwd)
  f.cli.title = card.cwd || "";
  // A parked agent says when it resumes, counting down (the ticker refreshes data-until).
  f.reason.dataset.until = card.state === "parked" && card.resume_at ? card.resume_at : "";
  f.reason.textContent = card.reason || "";
  if (f.reason.dataset.until) f.reason.textContent = `${card.reason} — resumes ${untilText(card.resume_at)}`;
  const p = card.pending_action;
  f.pending.hidden = !p;
  f.pending.textContent = p ? `wants: ${p.tool} ${p.target || ""}`.trim() : "";
  fillTask(entry, card);
  f.activity.dataset.ts = card.last_activity_at || "";
  f.activity.textContent = ago(card.last_activity_at);
  f.tools.textContent = String(card.tool_calls);
  const u = card.usage || {};
  f.tokens.textContent = `${tokens(u.input_tokens || 0)} in / ${tokens(u.output_tokens || 0)} out`;
  f.cost.textContent = costText(u);
  const blocked = card.state === "denied" || card.state === "blocked-by-policy";
  f.abort.hidden = !(LIVE.has(card.state) || blocked || card.state === "parked");  // a finished or idle agent has nothing to abort
  f.allow.hidden = !blocked;
  f.deny.hidden = !blocked;
  for (const b of [f.abort, f.allow, f.deny]) {
    b.disabled = !state.token;
    b.title = state.token ? "" : "needs the token from the link `orch serve` printed";
  }
  const pane = ensurePane(card.id);
  pane.badge.textContent = card.state;
  pane.badge.dataset.state = card.state;
}

function renderTeamSummary() {
  const cards = [...state.agents.values()];
  $("team-empty").hidden = cards.length > 0;
  const live = cards.filter((c) => LIVE.has(c.state)).length;
  $("team-count").textContent = cards.length ? `${cards.length} agents, ${live} working` : "";
  let inTok = 0, outTok = 0, cost = 0, estimated = false, known = true;
  for (const c of cards) {
    inTok += c.usage.input_tokens || 0;
    outTok += c.usage.output_tokens || 0;
    cost += c.usage.cost_usd || 0;
    estimated = estimated || !!c.usage.cost_estimated;
    known = known && c.usage.price_known !== false;
  }
  const total = costText({cost_usd: cost, cost_estimated: estimated, price_known: known});
  $("totals").textContent = cards.length ? `${tokens(inTok)} in / ${tokens(outTok)} out · ${total}` : "";
  const trouble = cards.filter((c) => ATTENTION.has(c.state));
  const alerts = $("alerts");
  alerts.hidden = trouble.length === 0;
  alerts.replaceChildren();
  if (trouble.length) {
    alerts.append(el("strong", null, trouble.length > 1 ? `${trouble.length} agents need attention: `
                                                        : "1 agent needs attention: "));
    for (const c of trouble.slice(0, ALERTS_SHOWN)) {
      const item = el("span", "alert-item", `${c.id} ${c.state}${c.reason ? " — " + c.reason : ""}`);
      item.dataset.state = c.state;
      alerts.append(item);
    }
    if (trouble.length > ALERTS_SHOWN) {
      alerts.append(el("span", "alert-item muted", `and ${trouble.length - ALERTS_SHOWN} more (marked on their cards)`));
    }
  }
}

function tickActivity() {
  for (const {fields} of state.cards.values()) {
    fields.activity.textContent = ago(fields.activity.dataset.ts);
  }
}

// ------------------------------------------------------------------ actions

async function act(agentId, action, button) {
  if (!state.token) return;
  if (action === "abort" && button.dataset.armed !== "1") {
    // a second click confirms: no modal dialog, nothing to dismiss
    button.dataset.armed = "1";
    button.textContent = "Confirm abort";
    setTimeout(() => { button.dataset.armed = ""; button.textContent = "Abort"; }, 4000);
    return;
  }
  button.disabled = true;
  try {
    const r = await fetch(`/api/sessions/${encodeURIComponent(state.sessionId)}/agents/` +
      `${encodeURIComponent(agentId)}/${action}`, {
      method: "POST",
      headers: {"X-Orch-Token": state.token, "Accept": "application/json"},
      cache: "no-store",
    });
    const body = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(body.error || `${r.status}`);
    toast(`${agentId}: ${action} done`);
  } catch (e) {
    toast(`${agentId}: ${action} failed — ${e.message}`, true);
  } finally {
    button.disabled = !state.token;
    button.dataset.armed = "";
    if (action === "abort") button.textContent = "Abort";
  }
}

// ------------------------------------------------------------------ log panes

function ensurePane(key) {
  let pane = state.panes.get(key);
  if (pane) return pane;
  const root = document.getElementById("pane-template").content.firstElementChild.cloneNode(true);
  root.dataset.pane = key;
  root.id = `pane-${key}`;
  root.querySelector(".pane-title").textContent = key === SESSION_PANE ? "session (conductor)" : key;
  pane = {
    key, root, lines: root.querySelector(".lines"), badge: root.querySelector(".state"),
    countEl: root.querySelector(".pane-count"), count: 0, cap: PANE_CAP, oldest: null, exhausted: false,
  };
  pane.badge.hidden = key === SESSION_PANE;
  root.querySelector(".older").addEventListener("click", () => loadOlder(pane));
  state.panes.set(key, pane);
  const logs = $("logs");
  if (key === SESSION_PANE) {
    logs.prepend(root);
  } else {
    const after = [...logs.children].find((c) => c.dataset.pane !== SESSION_PANE && naturalCompare(c.dataset.pane, key) > 0);
    logs.insertBefore(root, after || null);
  }
  return pane;
}

function describe(ev) {
  const d = ev.data || {};
  if (ev.kind === "agent.output") {
    switch (d.kind) {
      case "text": return ["text", d.text];
      case "tool_started": return ["tool", `▶ ${d.tool || "tool"} ${d.target || ""}`];
      case "tool_finished": return [d.ok === false ? "bad" : "tool", `${d.ok === false ? "✖" : "✓"} ${d.tool || ""} ${d.target || ""}`];
      case "file_changed": return ["file", `✎ ${d.change || "changed"} ${d.path || ""}`];
      case "denial": return ["bad", `⊘ denied: ${d.tool || ""} ${d.target || ""} ${d.message ? "— " + d.message : ""}`];
      case "usage": return ["muted", `Σ ${(d.usage || {}).input_tokens || 0} in / ${(d.usage || {}).output_tokens || 0} out`];
      case "error": return ["bad", `✖ ${d.message || "error"}`];
      case "status": return ["muted", `… ${d.status || d.message || "status"}`];
      case "run_finished": return ["state", `■ run finished: ${d.outcome || ""}`];
      case "session_started": return ["muted", `● CLI session ${d.session_id || ""}`];
      default: return ["muted", `? ${d.raw_type || d.kind || "unknown"}`];
    }
  }
  if (ev.kind === "agent.state") return [ATTENTION.has(d.to) ? "bad" : "state", `→ ${d.to}${ev.reason ? ": " + ev.reason : ""}`];
  if (ev.kind === "agent.exited") return [d.failure ? "bad" : "state", `■ exited (code ${d.exit_code ?? "?"}): ${ev.reason || ""}`];
  if (ev.kind === "denial") return ["bad", `⊘ denial: ${ev.reason || ""}`];
  return ["event", `${ev.kind}${ev.reason ? ": " + ev.reason : ""}`];
}

function lineFor(ev) {
  const [cls, text] = describe(ev);
  const line = el("div", `line ${cls}`);
  line.dataset.id = ev.id;
  line.append(el("span", "ts", clock(ev.ts)), document.createTextNode(" " + cut(text)));
  return line;
}

function paneKey(ev) {
  return ev.agent || SESSION_PANE;
}

// Append events (oldest first) to their panes; each pane gets one fragment and one trim.
function appendEvents(events, history) {
  const groups = new Map();
  for (const ev of events) {
    if (typeof ev.id === "number" && (state.lastEventId === null || ev.id > state.lastEventId)) {
      state.lastEventId = ev.id;
    }
    const key = paneKey(ev);
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push(ev);
  }
  for (const [key, evs] of groups) {
    const pane = ensurePane(key);
    const keep = evs.length > pane.cap ? evs.slice(evs.length - pane.cap) : evs;
    const atBottom = pane.lines.scrollHeight - pane.lines.scrollTop - pane.lines.clientHeight < 24;
    const frag = document.createDocumentFragment();
    for (const ev of keep) frag.append(lineFor(ev));
    pane.lines.append(frag);
    pane.count += evs.length;
    if (pane.oldest === null) pane.oldest = evs[0].id;
    let extra = pane.lines.childElementCount - pane.cap;
    while (extra-- > 0) pane.lines.firstElementChild.remove();
    // lines trimmed from the top can be fetched again with "older"
    if (pane.lines.firstElementChild) pane.oldest = Number(pane.lines.firstElementChild.dataset.id);
    pane.countEl.textContent = `${pane.count} events`;
    if (atBottom || history) pane.lines.scrollTop = pane.lines.scrollHeight;
  }
}

async function loadOlder(pane) {
  if (pane.exhausted || pane.oldest === null) return;
  const params = new URLSearchParams({before: String(pane.oldest), limit: String(OLDER_PAGE)});
  if (pane.key !== SESSION_PANE) params.set("agent", pane.key);
  try {
    const page = await getJSON(`/api/sessions/${encodeURIComponent(state.sessionId)}/events?${params}`);
    const events = pane.key === SESSION_PANE ? page.events.filter((e) => !e.agent) : page.events;
    const frag = document.createDocumentFragment();
    for (const ev of events) frag.append(lineFor(ev));
    const before = pane.lines.scrollHeight;
    pane.lines.prepend(frag);
    pane.lines.scrollTop += pane.lines.scrollHeight - before;
    pane.cap += events.length;  // asked for: keep them
    if (events.length) pane.oldest = events[0].id;
    if (page.prev === null) {
      pane.exhausted = true;
      pane.root.querySelector(".older").disabled = true;
    }
  } catch (e) {
    toast(`older events of ${pane.key}: ${e.message}`, true);
  }
}

// ------------------------------------------------------------------ the stream

function setConn(s, text) {
  const c = $("conn");
  c.dataset.state = s;
  c.textContent = text || s;
}

function streamUrl() {
  const base = `/api/sessions/${encodeURIComponent(state.sessionId)}/stream`;
  // A fresh stream starts where the loaded history ended; the browser's own reconnects
  // send Last-Event-ID, which the server prefers over these parameters.
  if (state.lastEventId !== null) return `${base}?last_event_id=${state.lastEventId}`;
  return state.startFrom !== null ? `${base}?from=${state.startFrom}` : base;
}

function connect() {
  if (state.source) state.source.close();
  const source = new EventSource(streamUrl());
  state.source = source;
  source.addEventListener("session", (m) => {
    state.inbox.session = JSON.parse(m.data);
    queueFlush();
  });
  source.addEventListener("agent", (m) => {
    const card = JSON.parse(m.data);
    state.inbox.agents.set(card.id, card);
    queueFlush();
  });
  source.addEventListener("event", (m) => {
    const ev = JSON.parse(m.data);
    // counted on receipt, not when drawn: a new stream must not resend what waits in the inbox
    if (state.lastEventId === null || ev.id > state.lastEventId) state.lastEventId = ev.id;
    state.inbox.events.push(ev);
    queueFlush();
  });
  source.addEventListener("ready", () => setConn("live"));
  // a damaged session file: the server says which, in one line, and ends the stream
  source.addEventListener("damaged", (m) => setConn("damaged", JSON.parse(m.data).error));
  source.onerror = () => {
    if (source.readyState === EventSource.CLOSED) {
      // the server refused or vanished mid-answer: start a new stream from the last event seen
      setConn("reconnecting");
      clearTimeout(state.reconnectTimer);
      state.reconnectTimer = setTimeout(connect, 2000);
    } else {
      setConn("reconnecting");
    }
  };
}

// ------------------------------------------------------------------ start

async function main() {
  try {
    state.sessionId = await chooseSession();
  } catch (e) {
    setConn("offline", `offline: ${e.message}`);
    return;
  }
  state.token = readToken();
  if (!state.sessionId) {
    setConn("idle", "no session yet");
    $("session-goal").textContent = "No session in this workspace yet: `orch start GOAL` or `orch run GOAL` here " +
      "starts one, and this page shows it when it appears. (`orch demo` runs in a folder of its own: " +
      "`orch demo --serve` shows its dashboard.)";
    // The link's token is kept for this tab: the session that appears opens with it.
    setInterval(async () => {
      const sessions = await getJSON("/api/sessions").catch(() => []);
      if (sessions.length) location.reload();
    }, 2000);
    return;
  }
  $("token-note").hidden = !!state.token;
  ensurePane(SESSION_PANE);
  try {
    const page = await getJSON(`/api/sessions/${encodeURIComponent(state.sessionId)}/events?limit=${FIRST_PAGE}`);
    state.startFrom = page.next;
    appendEvents(page.events, true);
    for (const pane of state.panes.values()) {
      if (page.prev === null) pane.exhausted = true;
    }
  } catch (e) {
    toast(`history: ${e.message}`, true);
  }
  connect();
  setInterval(tickActivity, 1000);
  $("budget-raise").addEventListener("click", raiseBudget);
  setInterval(loadBudget, 3000);  // spend grows with the agents' cards, not only with session frames
}

document.addEventListener("visibilitychange", () => {
  if (!document.hidden && state.inbox.events.length) flush();
});

main();

function untilText(iso) {
  const left = Math.round((Date.parse(iso) - Date.now()) / 1000);
  if (left <= 0) return "now";
  const h = Math.floor(left / 3600), m = Math.floor((left % 3600) / 60), s = left % 60;
  return `in ${h ? h + "h" : ""}${h || m ? String(m).padStart(h ? 2 : 1, "0") + "m" : ""}${String(s).padStart(2, "0")}s`;
}

setInterval(() => {
  for (const [id, entry] of state.cards) {
    const r = entry.fields.reason;
    if (r.dataset.until) {
      const card = state.agents.get(id);
      r.textContent = `${card.reason} — resumes ${untilText(r.dataset.until)}`;
    }
  }
}, 1000);

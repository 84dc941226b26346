// The dashboard (GET /): federations, the selected one's method, the open round's clients as they train
// (their heartbeats), its latest rounds (with the bytes each moved) and clients, its train-loss curve and a curve
// per federated-evaluation metric, read from the same JSON API every two
// seconds. The page itself holds no data: it asks for the viewer token,
// keeps it in the tab's sessionStorage and sends it as a header (never in a URL, where logs keep it).

const SCRIPT = `
const el = (tag, attrs = {}, ...children) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
};
const table = (id, headers, rows) =>
  el("table", { "data-testid": id }, el("thead", {}, el("tr", {}, ...headers.map((h) => el("th", {}, h)))), el("tbody", {}, ...rows));
const TOKEN = "fedflare-viewer-token";
class SignedOut extends Error {}
const get = async (url) => {
  const res = await fetch(url, { headers: { authorization: "Bearer " + sessionStorage.getItem(TOKEN) } });
  if (res.status === 401) throw new SignedOut((await res.json()).error.message);
  if (!res.ok) throw new Error(url + ": " + res.status);
  return res;
};
const json = async (url) => (await get(url)).json();
// The charts' object URLs of the page on screen, revoked once the next refresh has replaced it.
let plotUrls = [];
let shownUrls = [];
const plot = async (url) => {
  const made = URL.createObjectURL(await (await get(url)).blob());
  plotUrls.push(made);
  return made;
};
const shown = () => {
  for (const u of shownUrls) URL.revokeObjectURL(u);
  shownUrls = plotUrls;
  plotUrls = [];
};
function signIn(message) {
  sessionStorage.removeItem(TOKEN);
  const input = el("input", { type: "password", "data-testid": "token", placeholder: "viewer token", autocomplete: "off", size: "40" });
  const form = el("form", { "data-testid": "sign-in" }, el("p", {}, message), input, " ", el("button", { type: "submit" }, "Sign in"));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    sessionStorage.setItem(TOKEN, input.value);
    document.getElementById("detail").replaceChildren();
    tick();
  });
  document.getElementById("federations").replaceChildren(form);
  document.getElementById("updated").textContent = "";
}
const time = (ms) => (ms ? new Date(ms).toLocaleTimeString() : "-");
const bytes = (n) => (n >= 1048576 ? (n / 1048576).toFixed(2) + " MiB" : n >= 1024 ? (n / 1024).toFixed(1) + " KiB" : n + " B");
// A private federation's ε so far at its δ, and its budget when it has one.
const spent = (f) =>
  f.privacy ? f.privacy.epsilon.toFixed(3) + (f.config.privacy.epsilonBudget ? " (" + f.config.privacy.epsilonBudget + ")" : "") : "-";
let selected = new URLSearchParams(location.search).get("federation");
// Rounds read and listed (?rounds=, default 50): a federation of thousands of rounds is not read whole every refresh.
const SHOWN = Math.max(1, Math.floor(Number(new URLSearchParams(location.search).get("rounds"))) || 50);
// The method and what wraps it: "lora (r 4, alpha 8, …), robust median, SecAgg+, central DP".
const methodOf = (c) => {
  const { type, ...settings } = c.method;
  const rest = Object.entries(settings).map(([k, v]) => k + " " + (typeof v === "object" ? JSON.stringify(v) : v)).join(", ");
  const extras = [
    c.robust ? "robust " + c.robust.rule.name : null,
    c.secureAggregation ? "SecAgg+" : null,
    c.privacy ? (c.privacy.mode ?? "central") + " DP" : null,
  ].filter(Boolean);
  return [type + (rest ? " (" + rest + ")" : ""), ...extras].join(", ");
};
// A sampled client of the open round: uploaded, or its last heartbeat's steps, or waiting for one.
const progressRow = (r, c) => {
  const p = r.progress && r.progress[c];
  const uploaded = r.receipts.some((x) => x.clientId === c);
  const bar = el("progress", { max: p ? p.steps : 1, value: uploaded ? (p ? p.steps : 1) : p ? p.stepsDone : 0 });
  return el("tr", { "data-testid": "progress-row" }, el("td", {}, c),
    el("td", {}, uploaded ? "uploaded" : p ? p.stepsDone + " / " + p.steps : "waiting"), el("td", {}, bar), el("td", {}, time(p && p.at)));
};

async function refresh() {
  const feds = await json("/federations");
  if (!selected && feds.length) selected = feds[0].id;
  document.getElementById("federations").replaceChildren(
    table("federations", ["federation", "model", "strategy", "rounds", "version", "open round", "ε spent (budget)"], feds.map((f) =>
      el("tr", { "data-testid": "federation-row", class: f.id === selected ? "selected" : "" },
        el("td", {}, el("a", { href: "?federation=" + encodeURIComponent(f.id) }, f.id)), el("td", {}, f.config.model.name),
        el("td", {}, f.config.strategy.name), el("td", {}, f.roundsDone + " / " + f.config.rounds), el("td", {}, f.version),
        el("td", {}, f.openRound ?? "-"), el("td", {}, spent(f))))),
  );
  const fed = feds.find((f) => f.id === selected);
  if (!fed) {
    document.getElementById("detail").replaceChildren(
      el("p", {}, feds.length ? "no federation " + selected : "no federations yet: POST /federations"),
    );
    return;
  }
  // The latest SHOWN rounds, each read whole; the curve (plot.svg) has every round.
  const first = Math.max(1, (fed.latestRound ?? 0) - SHOWN + 1);
  const numbers = Array.from({ length: Math.max(0, (fed.latestRound ?? 0) - first + 1) }, (_, i) => first + i);
  const rounds = await Promise.all(numbers.map((n) => json("/federations/" + encodeURIComponent(fed.id) + "/rounds/" + n)));
  const clients = new Map(fed.config.clients.map((c) => [c, { sampled: 0, uploads: 0, examples: 0, last: 0 }]));
  for (const r of rounds) {
    for (const c of r.sampled) clients.get(c).sampled++;
    for (const x of r.receipts)
      Object.assign(clients.get(x.clientId), { uploads: clients.get(x.clientId).uploads + 1, examples: x.numExamples, last: x.receivedAt });
  }
  const open = rounds.find((r) => r.status === "open");
  const evaluated = await json("/federations/" + encodeURIComponent(fed.id) + "/evaluations");
  const metricNames = [...new Set(evaluated.flatMap((e) => Object.keys(e.metrics)))].sort();
  document.getElementById("detail").replaceChildren(
    el("h2", {}, fed.id),
    el("p", { "data-testid": "method" }, "method: " + methodOf(fed.config)),
    ...(open
      ? [el("h3", {}, "Round " + open.round + " (open): " + open.uploads + " of " + open.sampled.length + " uploaded"),
         table("progress", ["client", "steps", "", "last heard"], open.sampled.map((c) => progressRow(open, c)))]
      : []),
    el("img", {
      "data-testid": "plot",
      alt: "train loss by round",
      src: await plot("/federations/" + encodeURIComponent(fed.id) + "/plot.svg"),
    }),
    ...(evaluated.length
      ? [el("h3", {}, "Federated evaluation"),
         table("evaluations", ["version", "reports", "examples", ...metricNames], evaluated.map((e) =>
           el("tr", { "data-testid": "evaluation-row" }, el("td", {}, e.version), el("td", {}, e.reports), el("td", {}, e.numExamples),
             ...metricNames.map((m) => el("td", {}, e.metrics[m] === undefined ? "-" : e.metrics[m].toFixed(4)))))),
         ...(await Promise.all(metricNames.map(async (m) => el("img", {
           "data-testid": "evaluation-plot",
           alt: m + " by version",
           src: await plot("/federations/" + encodeURIComponent(fed.id) + "/evaluation.svg?metric=" + encodeURIComponent(m)),
         }))))]
      : []),
    el("h3", { "data-testid": "rounds-heading" }, first > 1 ? "Rounds (the latest " + SHOWN + " of " + fed.latestRound + ")" : "Rounds"),
    table("rounds",
      ["round", "status", "uploads", "examples", "train loss", "version", "ε", "opened", "closed", "bytes up", "version bytes"],
      rounds.map((r) =>
      el("tr", { "data-testid": "round-row" }, el("td", {}, r.round), el("td", {}, r.status),
        // A round past keepRoundDetail keeps its counts but not who was sampled or what each upload claimed.
        el("td", {}, r.uploads + " / " + (r.detail === "dropped" ? "-" : r.sampled.length)),
        el("td", {}, r.detail === "dropped" ? "-" : r.receipts.reduce((n, x) => n + x.numExamples, 0)),
        el("td", {},
          r.result && r.result.metrics && r.result.metrics.train_loss !== undefined ? r.result.metrics.train_loss.toFixed(4) : "-"),
        el("td", {}, r.result && r.result.version !== undefined ? r.result.version : "-"),
        el("td", {}, r.result && r.result.privacy ? r.result.privacy.epsilon.toFixed(3) : "-"),
        el("td", {}, time(r.openedAt)), el("td", {}, time(r.closedAt)),
        el("td", {}, r.result && r.result.bytes ? bytes(r.result.bytes.up) : "-"),
        el("td", {}, r.result && r.result.bytes ? bytes(r.result.bytes.version) : "-")))),
    el("h3", {}, "Clients" + (first > 1 || rounds.some((r) => r.detail === "dropped")
      ? " (over the rounds above whose detail is kept)" : "")),
    table("clients", ["client", "sampled", "uploads", "examples (last)", "last upload"], [...clients].map(([id, c]) =>
      el("tr", { "data-testid": "client-row" }, el("td", {}, id), el("td", {}, c.sampled), el("td", {}, c.uploads),
        el("td", {}, c.examples || "-"), el("td", {}, time(c.last))))),
  );
  shown();
  document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
}

const tick = () => {
  if (!sessionStorage.getItem(TOKEN)) return signIn("Sign in with the coordinator's viewer token (FEDFLARE_VIEWER_TOKEN).");
  refresh().catch((e) =>
    (e instanceof SignedOut ? signIn(e.message) : (document.getElementById("updated").textContent = "error: " + e.message)),
  );
};
tick();
setInterval(() => sessionStorage.getItem(TOKEN) && tick(), 2000);
`;

export function dashboardHtml(): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>fedflare</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
  body { font-family: system-ui, sans-serif; margin: 2rem; color: #222; }
  table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; }
  th, td { border-bottom: 1px solid #ddd; padding: 0.3rem 0.8rem; text-align: right; }
  th:first-child, td:first-child { text-align: left; }
  tr.selected td { background: #eef4fb; }
  img { max-width: 720px; width: 100%; border: 1px solid #eee; }
  #updated { color: #888; font-size: 0.85rem; }
  @media (max-width: 640px) {
    body { margin: 0.6rem; }
    table { display: block; overflow-x: auto; }
    th, td { padding: 0.25rem 0.5rem; }
  }
</style>
</head>
<body>
<h1>fedflare</h1>
<p id="updated">loading…</p>
<div id="federations"></div>
<div id="detail"></div>
<script type="module">${SCRIPT}</script>
</body>
</html>
`;
}

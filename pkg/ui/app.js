// The linker's page: reads /api/state (the records the terminal scripts read), draws the graph
// and the tables, and polls /api/version every second to redraw when something changed.
"use strict";

let version = null;
const $ = (id) => document.getElementById(id);
const text = (tag, content, cls) => {
  const element = document.createElement(tag);
  if (content !== undefined) element.textContent = content;
  if (cls) element.className = cls;
  return element;
};
const SVG = "http://www.w3.org/2000/svg";
const svg = (tag, attributes) => {
  const element = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, value);
  return element;
};

async function api(path, body) {
  const options = body === undefined ? {} : {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  };
  const response = await fetch("api/" + path, options);
  const json = await response.json().catch(() => ({ error: response.statusText }));
  if (!response.ok) throw new Error(typeof json.error === "string" ? json.error : JSON.stringify(json.error));
  return json;
}

// Why a listed library could not be fetched, and what to do (as the widget says it).
function fetchHint(problem) {
  const reason = (r) => {
    if (r === "Offline") return "offline";
    if (r === "NotMirroring") return "not mirroring it";
    if (r.TimedOut !== undefined) return `no answer within ${r.TimedOut} s`;
    if (r.SentNothing !== undefined) return `sent nothing within ${r.SentNothing} s`;
    if (r.HashMismatch !== undefined) return "sent bytes of another hash";
    return r.Failed;
  };
  let why;
  if (problem.NoVersionHash !== undefined) why = `its listing on chain names no hash for its current version ${problem.NoVersionHash}`;
  else if (problem.NoApi !== undefined) why = `version ${problem.NoApi} of its package has no api.zip`;
  else {
    const tried = problem.Nodes.tried.map((t) => `${t.node} ${reason(t.reason)}`);
    why = `version ${problem.Nodes.version} could not be fetched (tried ${tried.length ? tried.join("; ") : "no node"})`;
  }
  return `${why}: install it from the app store once a node that serves it is online`;
}

// What a failed link lacks: [library, hint] pairs.
function problems(error) {
  if (error.Unresolved) {
    // Components importing the same library report it each: it is named once.
    const pairs = error.Unresolved.map((u) => [u.name, u.hint]);
    return pairs.filter(([name, hint], i) => pairs.findIndex(([n, h]) => n === name && h === hint) === i);
  }
  if (error.MissingDependency) return [[error.MissingDependency.dependency, error.MissingDependency.hint]];
  if (error.FetchFailed) return [[error.FetchFailed.library, fetchHint(error.FetchFailed.problem)]];
  return [["", JSON.stringify(error)]];
}

function status(info) {
  if (info.status === "NothingToLink") return "nothing to link";
  if (info.status.Linked) return "linked";
  return "failed";
}

// The APIs a linked package was linked against, by package id (its own API left out).
function linkedApis(info) {
  if (!info.status.Linked) return [];
  return info.status.Linked.apis.filter((d) => d.provenance !== "Own" && d.name !== info.package).map((d) => d.name);
}

function render(state) {
  const failed = state.packages.filter((p) => status(p) === "failed" || p.missing_apis.length);
  const summary = $("summary");
  summary.textContent = failed.length
    ? `${failed.length} of ${state.packages.length} packages not linked: ${failed.map((p) => p.package).join(", ")}`
    : `Everything is linked (${state.packages.length} packages).`;
  summary.className = failed.length ? "bad" : "ok";
  $("auto").checked = state.auto;
  renderPackages(state);
  renderLibraries(state);
  renderGraph(state);
}

function renderPackages(state) {
  const body = $("packages").tBodies[0];
  body.replaceChildren();
  for (const info of state.packages) {
    const row = body.insertRow();
    row.dataset.package = info.package;
    row.insertCell().append(text("code", info.package));
    row.insertCell().append(text("code", info.version_hash.slice(0, 12), "hash"));
    row.insertCell().textContent = info.trigger === "Auto" ? "auto" : "request";
    const cell = row.insertCell();
    cell.append(text("span", status(info), status(info) === "failed" ? "failed state" : "state"));
    if (info.status.Failed) {
      for (const [library, hint] of problems(info.status.Failed)) {
        const line = text("span", "", "hint");
        if (library) line.append(text("code", library), " ");
        line.append(hint);
        cell.append(line);
      }
    }
    for (const missing of info.missing_apis) {
      cell.append(text("span", `runs with its copy of ${missing}, which was removed`, "hint"));
    }
    const actions = row.insertCell();
    const explain = text("button", "Explain");
    explain.onclick = () => showExplain(info.package);
    const relink = text("button", "Re-link");
    relink.onclick = () => confirmed(`Re-link and re-install ${info.package}?`, () => api("relink", { package: info.package }));
    actions.append(explain, relink);
  }
}

function renderLibraries(state) {
  const body = $("libraries").tBodies[0];
  body.replaceChildren();
  for (const info of state.packages) {
    if (!info.status.Linked) continue;
    for (const component of info.status.Linked.components) {
      for (const library of component.libraries) {
        const row = body.insertRow();
        row.insertCell().append(text("code", `${library.library.path} (${library.library.archive})`));
        row.insertCell().append(text("code", `${component.path} (${info.package})`));
        row.insertCell().textContent = library.can || "nothing";
        const bound = library.bound;
        row.insertCell().textContent = bound
          ? [bound.may ? "may: " + bound.may.join(", ") : "", bound.send_to ? "send to: " + bound.send_to.join(", ") : ""]
            .filter(Boolean).join("; ") + (library.guarded ? " (guarded)" : "")
          : "unbounded";
      }
    }
  }
}

function renderGraph(state) {
  const graph = $("graph");
  graph.replaceChildren();
  const packages = state.packages;
  const libraries = new Map();
  for (const api of state.apis) libraries.set(api.package, { name: api.package, problem: api.location === "removed", label: api.location === "removed" ? `${api.package} (removed)` : api.package });
  const edges = [];
  for (const info of packages) {
    for (const name of linkedApis(info)) {
      if (!libraries.has(name)) libraries.set(name, { name, problem: true, label: `${name} (missing)` });
      edges.push([info.package, name, info.missing_apis.includes(name)]);
    }
    if (info.status.Failed) {
      for (const [library] of problems(info.status.Failed)) {
        if (!library) continue;
        const key = "missing " + library;
        libraries.set(key, { name: key, problem: true, label: `${library} (missing)` });
        edges.push([info.package, key, true]);
      }
    }
  }
  const rowHeight = 44, width = 760, boxWidth = 300;
  const rows = Math.max(packages.length, libraries.size, 1);
  graph.setAttribute("viewBox", `0 0 ${width} ${rows * rowHeight + 20}`);
  graph.setAttribute("height", rows * rowHeight + 20);
  const position = new Map();
  packages.forEach((info, i) => position.set("p:" + info.package, [10, 10 + i * rowHeight]));
  [...libraries.keys()].forEach((key, i) => position.set("l:" + key, [width - boxWidth - 10, 10 + i * rowHeight]));
  for (const [from, to, problem] of edges) {
    const [x1, y1] = position.get("p:" + from);
    const [x2, y2] = position.get("l:" + to);
    graph.append(svg("line", { x1: x1 + boxWidth, y1: y1 + 15, x2, y2: y2 + 15, class: problem ? "problem" : "" }));
  }
  const box = (key, label, cls) => {
    const [x, y] = position.get(key);
    const group = svg("g", { class: cls, "data-node": key });
    group.append(svg("rect", { x, y, width: boxWidth, height: 30, rx: 6 }));
    const caption = svg("text", { x: x + 10, y: y + 20 });
    caption.textContent = label;
    group.append(caption);
    graph.append(group);
  };
  for (const info of packages) {
    const bad = status(info) === "failed" || info.missing_apis.length > 0;
    box("p:" + info.package, info.package, bad ? "package problem" : "package");
  }
  for (const [key, library] of libraries) box("l:" + key, library.label, library.problem ? "library problem" : "library");
}

/** One import's outcome in words, as `kinode-link explain` prints it (an `import-report`). */
function outcomeText(outcome) {
  const origin = (o) => (o.archive === o.path ? o.path : `${o.path} in ${o.archive}`);
  if (outcome === "Left") return "left as an import (the world allows it)";
  const [kind, value] = Object.entries(outcome)[0];
  switch (kind) {
    case "Linked":
      return `linked to ${value.export} from ${origin(value.provider)}${value.semver ? " (semver-compatible)" : ""}`;
    case "Unmatched":
      return value.length ? `no provider; other versions: ${value.join(", ")}` : "no provider on this node";
    case "Rejected":
      return `${value.export} from ${origin(value.provider)} has the wrong type: ${value.reason}`;
    case "Ambiguous":
      return `ambiguous: ${value.export} from ${value.candidates.map(origin).join(", ")}`;
    case "Cycle":
      return `cycle: ${value.map(origin).join(" -> ")}`;
    default:
      return JSON.stringify(outcome);
  }
}

async function showExplain(name) {
  $("explain-box").hidden = false;
  $("explain-name").textContent = name;
  $("explain").textContent = "…";
  try {
    const explanation = await api("explain", { package: name });
    const lines = [];
    for (const component of explanation.components) {
      lines.push(`${component.path}:`);
      if (!component.imports.length) lines.push("  nothing to link");
      for (const i of component.imports) {
        const by = i.importer.path === component.path ? "" : ` (imported by ${i.importer.path})`;
        lines.push(`  ${i.name}${by}: ${outcomeText(i.outcome)}`);
      }
    }
    $("explain").textContent = lines.join("\n");
  } catch (error) {
    $("explain").textContent = error.message;
  }
}

async function confirmed(question, action) {
  if (!window.confirm(question)) return;
  try {
    await action();
    $("message").textContent = "Done.";
  } catch (error) {
    $("message").textContent = error.message;
  }
  await refresh(true);
}

$("auto").onchange = (event) => {
  const on = event.target.checked;
  event.target.checked = !on;
  confirmed(`Turn auto-linking ${on ? "on" : "off"}?`, () => api("auto", { enabled: on }));
};

async function refresh(force) {
  try {
    const current = await api("version");
    if (!force && current.version === version) return;
    const state = await api("state");
    version = state.version;
    render(state);
  } catch (error) {
    $("message").textContent = error.message;
  }
}

refresh(true);
setInterval(refresh, 1000);

// esrag operations dashboard: polls /dashboard/api/state and renders each section.
"use strict";
(function () {
  const cfg = JSON.parse(document.getElementById("config").dataset.config);
  const $ = (id) => document.getElementById(id);
  const last = {};
  let timer = null;

  const esc = (v) => String(v ?? "").replace(/[&<>"']/g,
    (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  const num = (v) => (v === null || v === undefined ? "–" : Number(v).toLocaleString("en-US"));
  function bytes(b) {
    if (b === null || b === undefined) return "–";
    const u = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0; let x = Number(b);
    while (x >= 1024 && i < u.length - 1) { x /= 1024; i++; }
    return (i ? x.toFixed(x < 10 ? 1 : 0) : x) + " " + u[i];
  }
  function dur(s) {
    if (s === null || s === undefined) return "–";
    s = Math.max(0, Math.round(s));
    if (s < 60) return s + "s";
    if (s < 3600) return Math.floor(s / 60) + "m " + (s % 60) + "s";
    if (s < 86400) return Math.floor(s / 3600) + "h " + Math.floor((s % 3600) / 60) + "m";
    return Math.floor(s / 86400) + "d " + Math.floor((s % 86400) / 3600) + "h";
  }
  function clock(ts) {
    if (!ts) return "–";
    const d = new Date(ts * 1000);
    const t = d.toLocaleTimeString("en-GB", { hour12: false });
    return d.toDateString() === new Date().toDateString() ? t : d.toISOString().slice(0, 10) + " " + t;
  }
  const downBox = (name, sec) => `<div class="down-box" data-down="${esc(name)}"><b>${esc(name)} is down</b>` +
    ` <span class="muted">(${esc(sec.error || "unavailable")})</span></div>`;

  function set(id, key, html) {
    if (last[key] === html) return;
    last[key] = html;
    $(id).innerHTML = html;
  }

  // ---- header pills ------------------------------------------------------------
  function pills(s) {
    const es = s.elasticsearch, rd = s.redis, wk = s.workers;
    const esState = es.up ? es.health.status : "down";
    const nWorkers = wk.up ? wk.workers.length : null;
    return [
      `<span class="pill" data-pill="elasticsearch"><i class="dot ${esc(esState)}"></i>Elasticsearch ${esc(esState)}</span>`,
      `<span class="pill" data-pill="redis"><i class="dot ${rd.up ? "up" : "down"}"></i>Redis ${rd.up ? "up" : "down"}</span>`,
      `<span class="pill" data-pill="workers"><i class="dot ${nWorkers ? "up" : nWorkers === 0 ? "yellow" : "down"}"></i>` +
        `${nWorkers === null ? "workers unknown" : nWorkers + " worker" + (nWorkers === 1 ? "" : "s") + " online"}</span>`,
    ].join("");
  }

  // ---- jobs ----------------------------------------------------------------------
  function chart(series, final) {
    if (!series || series.length === 0) {
      return `<div class="chart"><svg viewBox="0 0 300 86"><text x="150" y="46" text-anchor="middle" ` +
        `font-size="11" fill="#9aa3b2">no throughput samples yet</text></svg></div>`;
    }
    const W = 300, H = 70, top = 16;
    const max = Math.max(...series.map((p) => p[1]), 0.01);
    const span = series[series.length - 1][0];
    const step = W / series.length;
    const bars = series.map((p, i) => {
      const h = Math.max((p[1] / max) * (H - top), p[1] > 0 ? 1.5 : 0);
      return `<rect x="${(i * step + 0.5).toFixed(1)}" y="${(H - h).toFixed(1)}" width="${Math.max(step - 1, 1).toFixed(1)}" ` +
        `height="${h.toFixed(1)}" rx="1.5" fill="${final ? "#7fb99a" : "#6d9ef0"}"><title>${p[1]} chunks/s at +${dur(p[0])}</title></rect>`;
    }).join("");
    return `<div class="chart" data-chart><svg viewBox="0 0 300 86" role="img" aria-label="throughput over time">` +
      `<line x1="0" y1="${H + 0.5}" x2="300" y2="${H + 0.5}" stroke="#d5dbe5"/>${bars}` +
      `<text x="0" y="84" font-size="10" fill="#677085">0</text>` +
      `<text x="300" y="84" font-size="10" fill="#677085" text-anchor="end">+${esc(dur(span))}</text>` +
      `<text x="2" y="11" font-size="10" fill="#677085">peak ${esc(max.toFixed(1))} chunks/s</text></svg></div>`;
  }

  function job(j) {
    const pct = Math.round(j.progress * 1000) / 10;
    const finishedTasks = j.tasks_done + j.tasks_failed;
    const fillClass = j.final ? (j.files_failed || j.tasks_failed ? "warn" : "done") : "";
    const canRetry = j.files_failed > 0 || j.tasks_failed > 0;
    const failures = (j.failed || []).map((f) =>
      `<li title="${esc(f.source + ": " + f.error)}"><code>${esc(f.source.split("/").pop())}</code> — ${esc(f.error)}</li>`).join("");
    return `<div class="job" data-job="${esc(j.id)}" data-status="${esc(j.status)}">
      <div>
        <div class="job-head">
          <span class="job-id">${esc(j.id)}</span>
          <span class="badge ${esc(j.status)}" data-k="status">${esc(j.status.replace(/_/g, " "))}</span>
          <span class="muted">index ${esc(j.index)}</span>
          <span class="job-actions">
            <button data-action="retry" data-id="${esc(j.id)}" ${canRetry ? "" : "disabled"}>Retry failed</button>
            <button class="danger" data-action="cancel" data-id="${esc(j.id)}" ${j.final ? "disabled" : ""}>Cancel</button>
          </span>
        </div>
        <div class="bar" data-k="progress" data-progress="${pct}" title="${finishedTasks} of ${j.tasks_total} tasks finished">
          <div class="bar-fill ${fillClass}" style="width:${pct}%"></div>
          <div class="bar-text">${pct}% · ${finishedTasks}/${j.tasks_total} tasks</div>
        </div>
        <div class="stats">
          <span>documents <b data-k="documents">${num(j.documents)}</b> / <b data-k="files_total">${num(j.files_total)}</b> files</span>
          <span>chunks <b data-k="chunks">${num(j.chunks)}</b> (indexed <b data-k="indexed">${num(j.indexed)}</b>)</span>
          <span>tasks <b data-k="tasks_done">${num(j.tasks_done)}</b> done, <b data-k="tasks_failed">${num(j.tasks_failed)}</b> failed, <b data-k="tasks_total">${num(j.tasks_total)}</b> total</span>
          <span>files failed <b data-k="files_failed">${num(j.files_failed)}</b></span>
          <span>retries <b data-k="tasks_retried">${num(j.tasks_retried)}</b></span>
          ${j.tasks_stalled ? `<span class="stalled" title="worker lost; a live worker runs these again once their lease expires">stalled <b data-k="tasks_stalled">${num(j.tasks_stalled)}</b></span>` : ""}
        </div>
        <div class="stats muted">
          <span>throughput <b>${esc(j.chunks_per_s)}</b> chunks/s · <b>${esc(j.docs_per_s)}</b> docs/s</span>
          <span>ETA <b data-k="eta">${j.final ? "done" : j.eta_s === null ? "–" : dur(j.eta_s)}</b></span>
          <span>started <b>${esc(clock(j.started))}</b></span>
          <span>finished <b data-k="finished">${esc(clock(j.finished))}</b></span>
          ${j.skipped_unchanged ? `<span>unchanged <b>${num(j.skipped_unchanged)}</b></span>` : ""}
          ${j.deleted ? `<span>deleted <b>${num(j.deleted)}</b></span>` : ""}
        </div>
      </div>
      ${chart(j.rate, j.final)}
      ${j.error ? `<ul class="failures" data-k="error"><li>${esc(j.error)}</li></ul>` : ""}
      ${failures ? `<ul class="failures" data-k="failures">${failures}</ul>` : ""}
    </div>`;
  }

  function jobs(sec) {
    if (!sec.up) { set("jobs-summary", "js", ""); return downBox("Job store (Redis)", sec); }
    const h = sec.last_hour;
    set("jobs-summary", "js", `${sec.total} recorded · last hour: ${h.jobs} jobs, ` +
      `<span data-k="hour-retried">${h.tasks_retried}</span> task retries, ` +
      `<span data-k="hour-failed">${h.tasks_failed}</span> tasks failed, ` +
      `<span data-k="hour-files-failed">${h.files_failed}</span> files failed`);
    if (sec.jobs.length === 0) return `<div class="empty">No jobs yet: submit one with <code>esrag ingest PATH</code>.</div>`;
    return sec.jobs.map(job).join("");
  }

  // ---- workers, queues, queries ------------------------------------------------------
  function workers(sec) {
    if (!sec.up) return downBox("Workers (Celery inspect)", sec);
    if (sec.workers.length === 0) return `<div class="empty">No worker answered. Start one with <code>esrag worker</code>.</div>`;
    const rows = sec.workers.map((w) => {
      const act = w.active.length ? w.active.map((t) => `<div><code>${esc(t.id)}</code> <span class="muted">` +
        `${esc(t.file ? t.file.split("/").pop() : "")}${t.files > 1 ? " +" + (t.files - 1) : ""} · ${esc(dur(t.runtime_s))}</span></div>`).join("")
        : `<span class="muted">idle</span>`;
      return `<tr data-worker="${esc(w.name)}"><td>${esc(w.name)}</td><td>${esc(w.queues.join(", "))}</td>` +
        `<td class="num">${num(w.concurrency)}</td><td class="num">${num(w.processed)}</td>` +
        `<td class="num">${esc(dur(w.uptime_s))}</td><td>${act}</td></tr>`;
    }).join("");
    return `<table><thead><tr><th>Worker</th><th>Queues</th><th class="num">Concurrency</th>` +
      `<th class="num">Processed</th><th class="num">Uptime</th><th>Current task</th></tr></thead><tbody>${rows}</tbody></table>`;
  }

  function queues(sec) {
    if (!sec.up) return `<h3>Queues</h3>` + downBox("Broker (Redis)", sec);
    const rows = sec.queues.map((q) => `<tr data-queue="${esc(q.name)}"><td>${esc(q.name)}${q.name === cfg.queue ? ' <span class="muted">(this server)</span>' : ""}</td>` +
      `<td class="num" data-k="ready">${num(q.ready)}</td></tr>`).join("");
    return `<h3>Queues</h3><table><thead><tr><th>Queue</th><th class="num">Waiting</th></tr></thead><tbody>${rows}</tbody>` +
      `<tfoot><tr><td class="muted">delivered, not yet acknowledged (all queues)</td><td class="num" data-k="unacked">${num(sec.unacked)}</td></tr></tfoot></table>`;
  }

  function queries(sec) {
    if (!sec.up) return downBox("Query log (Redis)", sec);
    const a = sec.all;
    const ms = (v) => (v === null ? "–" : v.toFixed(1) + " ms");
    const kpis = `<div class="kpis"><div class="kpi"><div class="v">${(a.rate_per_s * 60).toFixed(1)}</div><div class="l">queries / min</div></div>` +
      `<div class="kpi"><div class="v">${ms(a.p50_ms)}</div><div class="l">p50</div></div>` +
      `<div class="kpi"><div class="v">${ms(a.p95_ms)}</div><div class="l">p95</div></div>` +
      `<div class="kpi"><div class="v">${(a.error_rate * 100).toFixed(1)}%</div><div class="l">errors</div></div></div>`;
    const modes = Object.entries(sec.modes);
    if (modes.length === 0) return kpis + `<div class="empty">No queries in the last 5 minutes.</div>`;
    const rows = modes.map(([m, s]) => `<tr data-mode="${esc(m)}"><td>${esc(m)}</td><td class="num">${num(s.count)}</td>` +
      `<td class="num">${s.rate_per_s.toFixed(2)}</td><td class="num">${ms(s.p50_ms)}</td><td class="num">${ms(s.p95_ms)}</td>` +
      `<td class="num">${(s.error_rate * 100).toFixed(1)}%</td></tr>`).join("");
    return kpis + `<table><thead><tr><th>Mode</th><th class="num">Count</th><th class="num">Rate/s</th><th class="num">p50</th>` +
      `<th class="num">p95</th><th class="num">Errors</th></tr></thead><tbody>${rows}</tbody></table>`;
  }

  // ---- Elasticsearch -------------------------------------------------------------------
  function elasticsearch(sec) {
    if (!sec.up) return downBox("Elasticsearch", sec);
    const h = sec.health;
    const kpis = `<div class="kpis"><div class="kpi"><div class="v"><span class="badge ${esc(h.status)}" data-k="es-status">${esc(h.status)}</span></div><div class="l">${esc(h.cluster_name)}</div></div>` +
      `<div class="kpi"><div class="v">${num(h.number_of_nodes)}</div><div class="l">nodes</div></div>` +
      `<div class="kpi"><div class="v">${num(h.active_shards)}</div><div class="l">active shards</div></div>` +
      `<div class="kpi"><div class="v">${num(h.unassigned_shards)}</div><div class="l">unassigned</div></div>` +
      `<div class="kpi"><div class="v">${num(h.relocating_shards + h.initializing_shards)}</div><div class="l">moving</div></div></div>`;
    const nodes = sec.nodes.map((n) => `<tr><td>${esc(n.name)}${n.master === "*" ? ' <span class="muted">(master)</span>' : ""}</td>` +
      `<td>${esc(n.ip)}</td><td>${esc(n.version)}</td><td>${esc(n["node.role"])}</td><td class="num">${esc(n["heap.percent"])}%</td>` +
      `<td class="num">${esc(n["ram.percent"])}%</td><td class="num">${esc(n.cpu)}%</td><td class="num">${esc(n.load_1m)}</td>` +
      `<td class="num">${esc(n["disk.used_percent"])}%</td></tr>`).join("");
    const nodeTable = `<h3>Nodes</h3><table><thead><tr><th>Node</th><th>IP</th><th>Version</th><th>Roles</th><th class="num">Heap</th>` +
      `<th class="num">RAM</th><th class="num">CPU</th><th class="num">Load 1m</th><th class="num">Disk</th></tr></thead><tbody>${nodes}</tbody></table>`;
    let idx;
    if (sec.indices.length === 0) {
      idx = `<div class="empty">No esrag index yet.</div>`;
    } else {
      const rows = sec.indices.map((i) => {
        const vm = i.vector_memory;
        return `<tr data-index="${esc(i.name)}"><td>${esc(i.name)}<div class="muted">${esc(i.aliases.join(", ") || "no alias")}</div></td>` +
          `<td><span class="badge ${esc(i.health)}">${esc(i.health)}</span></td>` +
          `<td class="num" data-k="docs">${num(i.docs)}</td><td class="num">${bytes(i.store_bytes)}</td>` +
          `<td class="num">${num(i.segments)}</td><td class="num" data-k="vectors">${num(i.vectors)}</td>` +
          `<td>${esc(vm.kind)} <span class="muted">${esc(vm.dims)}d</span></td>` +
          `<td class="num" title="vectors ${bytes(vm.vector_bytes)} + HNSW graph ${bytes(vm.graph_bytes)}">${bytes(vm.total_bytes)}</td>` +
          `<td class="num">${esc(i.refresh_interval)}</td><td>${esc(i.model)}</td></tr>`;
      }).join("");
      idx = `<table><thead><tr><th>Index</th><th>Health</th><th class="num">Chunks</th><th class="num">Store</th>` +
        `<th class="num">Segments</th><th class="num">Vectors</th><th>Quantization</th><th class="num">Vector memory (est.)</th>` +
        `<th class="num">Refresh</th><th>Model</th></tr></thead><tbody>${rows}</tbody></table>`;
    }
    const more = sec.indices_total > sec.indices.length ? ` <small>${sec.indices.length} of ${sec.indices_total} shown</small>` : "";
    return kpis + nodeTable + `<h3>esrag indices${more}</h3>` + idx;
  }

  // ---- polling and actions ----------------------------------------------------------
  function render(s) {
    set("pills", "pills", pills(s));
    set("jobs", "jobs", jobs(s.jobs));
    set("workers", "workers", workers(s.workers));
    set("queues", "queues", queues(s.queues));
    set("queries", "queries", queries(s.queries));
    set("elasticsearch", "es", elasticsearch(s.elasticsearch));
    const u = $("updated");
    u.textContent = "updated " + clock(s.time);
    u.classList.remove("stale");
    document.body.dataset.updated = String(s.time);
  }

  function banner(text) {
    const b = $("banner");
    b.hidden = !text;
    b.textContent = text || "";
    if (text) $("updated").classList.add("stale");
  }

  async function poll() {
    clearTimeout(timer);
    try {
      const r = await fetch("/dashboard/api/state", { credentials: "same-origin", cache: "no-store" });
      if (r.status === 401) {
        banner("Not authorised: open /dashboard?key=<API key> again.");
      } else if (!r.ok) {
        banner(`The dashboard server answered HTTP ${r.status}; retrying.`);
      } else {
        render(await r.json());
        banner("");
      }
    } catch (e) {
      banner("The dashboard server is unreachable; retrying.");
    }
    timer = setTimeout(poll, cfg.poll_ms);
  }

  function toast(text) {
    const t = $("toast");
    t.textContent = text;
    t.hidden = false;
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => { t.hidden = true; }, 4000);
  }

  document.addEventListener("click", async (ev) => {
    const btn = ev.target.closest("button[data-action]");
    if (!btn || btn.disabled) return;
    const { action, id } = btn.dataset;
    if (action === "cancel" && !window.confirm(`Cancel job ${id}? Tasks not yet started are skipped.`)) return;
    btn.disabled = true;
    try {
      const r = await fetch(`/dashboard/api/jobs/${encodeURIComponent(id)}/${action}`, {
        method: "POST", credentials: "same-origin", headers: { "X-Dashboard": "1" },
      });
      const body = await r.json().catch(() => ({}));
      if (!r.ok) toast(`${action} failed: ${body.detail || "HTTP " + r.status}`);
      else if (action === "retry") toast(`Job ${id}: requeued ${body.requeued} task(s)`);
      else toast(body.canceled ? `Job ${id} canceled` : `Job ${id} had already finished`);
    } catch (e) {
      toast(`${action} failed: server unreachable`);
    }
    poll();
  });

  poll();
})();

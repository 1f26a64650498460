// esrag search workbench: every retrieval mode side by side, the streamed answer, cited passages.
"use strict";
(function () {
  const cfg = JSON.parse(document.getElementById("config").dataset.config);
  const $ = (id) => document.getElementById(id);
  const esc = (v) => String(v ?? "").replace(/[&<>"']/g,
    (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  const fmt = (v, d = 3) => (v === null || v === undefined ? "–" : Number(v).toFixed(d));
  const COLS = { "bm25": "col-bm25", "dense": "col-dense", "hybrid": "col-hybrid", "hybrid+rerank": "col-hybrid-rerank" };
  const HEADERS = { "Content-Type": "application/json", "X-Dashboard": "1" };
  let timings = {};
  let judgments = {};
  let lastQuery = "";

  $("index-name").textContent = cfg.index;

  function banner(msg) {
    $("banner").hidden = !msg;
    $("banner").textContent = msg || "";
  }

  function parseFilters(text) {
    const out = {};
    for (const part of text.split(",")) {
      const p = part.trim();
      if (!p) continue;
      const i = p.indexOf("=");
      if (i < 1) throw new Error(`filter "${p}" is not key=value`);
      out[p.slice(0, i).trim()] = p.slice(i + 1).trim();
    }
    return out;
  }

  async function detail(r) {
    try {
      const d = (await r.json()).detail;
      return Array.isArray(d) ? d.map((e) => e.msg).join("; ") : String(d);
    } catch (e) { return `HTTP ${r.status}`; }
  }

  function leg(name, l) {
    if (!l) return `<span>${name} <b>–</b></span>`;
    return `<span>${name} <b>#${l.rank}</b> raw ${fmt(l.raw)} · norm ${fmt(l.norm)}</span>`;
  }

  function hitHtml(mode, h) {
    const j = judgments[h.chunk_id];
    const cls = j === undefined ? "" : (j > 0 ? " rel" : " nonrel");
    const from = h.hybrid_rank ? ` <span class="muted">(hybrid #${h.hybrid_rank})</span>` : "";
    const snippet = h.text.replace(/\s+/g, " ").slice(0, 180);
    const judge = cfg.judgments ? `<div class="judge"><button type="button" data-judge="1">relevant</button>` +
      `<button type="button" data-judge="0">not relevant</button></div>` : "";
    return `<li class="hit${cls}" data-chunk="${esc(h.chunk_id)}" data-doc="${esc(h.doc_id)}">` +
      `<div class="top"><span class="rank">${h.rank}</span><span class="id">${esc(h.chunk_id)}</span>` +
      `<span class="score">${fmt(h.score, 4)}</span></div>` +
      `<div class="muted">${esc(h.source)}${from}</div><div class="snippet">${esc(snippet)}</div>` +
      `<div class="legs">${leg("BM25", h.bm25)}<br>${leg("dense", h.dense)}</div>${judge}</li>`;
  }

  function renderTimings() {
    const parts = [["embed", timings.embed_ms], ["Elasticsearch", timings.es_ms], ["fusion", timings.fusion_ms],
      ["rerank", timings.rerank_ms], ["generation", timings.generate_ms]];
    const max = Math.max(1, ...parts.map((p) => p[1] || 0));
    $("timings").innerHTML = parts.map(([name, ms]) => `<div class="t" data-stage="${name}"><b>` +
      `${ms === undefined ? "–" : fmt(ms, 1) + " ms"}</b><span>${name}</span>` +
      `<div class="bar" style="width:${Math.round(90 * (ms || 0) / max)}px"></div></div>`).join("");
    $("timings-total").textContent = timings.total_ms ? `retrieval ${fmt(timings.total_ms, 1)} ms` : "";
  }

  function showFusion(f) {
    const t = f.tuned;
    $("fusion-pill").textContent = `fusion ${f.method}, dense weight ${f.weight_dense}`;
    $("fusion-pill").dataset.source = f.source;
    $("tuned").textContent = t ? `tuned on ${t.queries} judged queries: ${t.fusion}, weight ` +
      `${t.hybrid_weight_dense}, nDCG@10 ${fmt(t.ndcg_at_10, 4)}` + (f.source === "tuned" ? "" :
      " (a setting overrides it)") : "not tuned: mark hits, then run esrag tune";
  }

  fetch("/dashboard/api/search/tuning", { credentials: "same-origin", cache: "no-store" })
    .then((r) => (r.ok ? r.json() : null)).then((f) => { if (f) showFusion(f); }).catch(() => {});

  async function compare(query, k, filters, rerank) {
    for (const id of Object.values(COLS)) $(id).innerHTML = `<li class="muted">searching…</li>`;
    const r = await fetch("/dashboard/api/search/compare", {
      method: "POST", credentials: "same-origin", headers: HEADERS,
      body: JSON.stringify({ query, k, filters, rerank }),
    });
    if (!r.ok) throw new Error(await detail(r));
    const out = await r.json();
    showFusion(out.fusion);
    for (const [mode, id] of Object.entries(COLS)) {
      const rows = out.modes[mode];
      $(id).innerHTML = rows === undefined ? `<li class="muted">rerank off</li>`
        : (rows.length ? rows.map((h) => hitHtml(mode, h)).join("") : `<li class="muted">no hits</li>`);
    }
    Object.assign(timings, out.timings_ms);
    renderTimings();
  }

  async function answer(question, k, filters) {
    $("answer").textContent = ""; $("citations").innerHTML = ""; $("doc-view").hidden = true;
    $("answer-state").textContent = "generating…";
    const r = await fetch("/dashboard/api/search/ask", {
      method: "POST", credentials: "same-origin", headers: HEADERS,
      body: JSON.stringify({ question, filters }),
    });
    if (!r.ok) throw new Error(await detail(r));
    const reader = r.body.getReader();
    const dec = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += dec.decode(value, { stream: true });
      let cut;
      while ((cut = buf.indexOf("\n\n")) >= 0) {
        const block = buf.slice(0, cut); buf = buf.slice(cut + 2);
        const ev = (block.match(/^event: (.*)$/m) || [])[1];
        const data = JSON.parse((block.match(/^data: (.*)$/m) || [])[1] || "{}");
        if (ev === "token") $("answer").textContent += data.text;
        else if (ev === "done") finishAnswer(data);
        else if (ev === "error") throw new Error(data.detail);
      }
    }
  }

  function finishAnswer(a) {
    $("answer").textContent = a.answer;
    $("answer-state").textContent = `${a.citations.length} citation(s)` + (a.backend ? ` · ${a.backend}` : "");
    $("citations").innerHTML = a.citations.map((c) => `<li value="${c.n}"><a class="cite" data-n="${c.n}" ` +
      `data-doc="${esc(c.doc_id)}" data-start="${c.start}" data-end="${c.end}">${esc(c.source)}</a> ` +
      `<span class="muted">${esc(c.chunk_id)}, chars ${c.start}–${c.end}</span></li>`).join("");
    if (a.timings_ms && a.timings_ms.generate_ms !== undefined) {
      timings.generate_ms = a.timings_ms.generate_ms;
      renderTimings();
    }
  }

  async function openCitation(a) {
    const start = Number(a.dataset.start); const end = Number(a.dataset.end);
    const r = await fetch(`/dashboard/api/search/document?doc_id=${encodeURIComponent(a.dataset.doc)}`,
      { credentials: "same-origin", cache: "no-store" });
    if (!r.ok) throw new Error(await detail(r));
    const doc = await r.json();
    const text = doc.text;
    $("doc-title").textContent = `[${a.dataset.n}] ${doc.source} — characters ${start}–${end} of ${text.length}`;
    $("doc-text").innerHTML = esc(text.slice(0, start)) +
      `<mark id="cited" data-start="${start}" data-end="${end}">${esc(text.slice(start, end))}</mark>` +
      esc(text.slice(end));
    $("doc-view").hidden = false;
    $("cited").scrollIntoView({ block: "center" });
  }

  async function judge(btn) {
    const li = btn.closest(".hit");
    const relevance = Number(btn.dataset.judge);
    const r = await fetch("/dashboard/api/judgments", {
      method: "POST", credentials: "same-origin", headers: HEADERS,
      body: JSON.stringify({ query: lastQuery, chunk_id: li.dataset.chunk, doc_id: li.dataset.doc, relevance }),
    });
    if (!r.ok) throw new Error(await detail(r));
    judgments[li.dataset.chunk] = relevance;
    document.querySelectorAll(`.hit[data-chunk="${CSS.escape(li.dataset.chunk)}"]`).forEach((el) => {
      el.classList.toggle("rel", relevance > 0); el.classList.toggle("nonrel", relevance === 0);
    });
  }

  async function loadJudgments(query) {
    judgments = {};
    if (!cfg.judgments) return;
    const r = await fetch(`/dashboard/api/judgments?query=${encodeURIComponent(query)}`,
      { credentials: "same-origin", cache: "no-store" });
    if (r.ok) for (const j of (await r.json()).judgments) judgments[j.chunk_id] = j.relevance;
  }

  $("search-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    banner("");
    timings = {};
    const query = $("q").value.trim();
    if (!query) return;
    lastQuery = query;
    let filters;
    try { filters = parseFilters($("filters").value); } catch (err) { banner(err.message); return; }
    const k = Number($("k").value);
    document.body.dataset.state = "running";
    const jobs = [loadJudgments(query).then(() => compare(query, k, filters, $("rerank").checked))];
    if ($("answer-on").checked) jobs.push(answer(query, k, filters));
    const results = await Promise.allSettled(jobs);
    const failed = results.find((x) => x.status === "rejected");
    if (failed) banner(failed.reason.message);
    document.body.dataset.state = "done";
  });

  document.addEventListener("click", (e) => {
    const cite = e.target.closest("a.cite");
    if (cite) { openCitation(cite).catch((err) => banner(err.message)); return; }
    const btn = e.target.closest("[data-judge]");
    if (btn) judge(btn).catch((err) => banner(err.message));
  });
})();

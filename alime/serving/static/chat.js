// The chat page: every piece of text goes into the DOM through textContent, never innerHTML,
// so whatever a user (or the KB) says is shown as text and never executed.
"use strict";
(function () {
  const log = document.getElementById("log");
  const form = document.getElementById("ask");
  const input = document.getElementById("query");
  const send = document.getElementById("send");
  const showCandidates = document.getElementById("show-candidates");
  const sessionId = "web-" + Math.random().toString(36).slice(2) + Date.now().toString(36);
  const SOURCE_LABEL = { retrieval: "知识库 KB", chitchat: "闲聊 chit-chat", generation: "生成 generated",
                         fallback: "兜底 fallback" };
  // The threshold each rule compares its score with: T for the FAQ (and a low-confidence
  // fallback, which reports the FAQ's best score), C for chit-chat, G for a generated answer.
  const THRESHOLD_NAME = { faq: "T", low_confidence: "T", time_budget: "T", chitchat: "C", generation: "G" };

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function fmt(x) { return (x === null || x === undefined) ? "–" : Number(x).toFixed(3); }

  function candidatesTable(cands) {
    const table = el("table", "cands" + (showCandidates.checked ? "" : " hidden"));
    const head = el("tr");
    ["#", "question", "answer", "retrieval", "rerank", "routing"].forEach((h) => head.appendChild(el("th", "", h)));
    table.appendChild(head);
    cands.forEach((c) => {
      const row = el("tr");
      row.appendChild(el("td", "num", String(c.id)));
      row.appendChild(el("td", "", c.question));
      row.appendChild(el("td", "", c.answer));
      row.appendChild(el("td", "num", fmt(c.retrieval_score)));
      row.appendChild(el("td", "num", fmt(c.rerank_score)));
      row.appendChild(el("td", "num", fmt(c.routing_score)));
      table.appendChild(row);
    });
    return table;
  }

  function addBotReply(reply) {
    const box = el("div", "msg bot");
    box.dataset.source = reply.source;
    box.appendChild(el("div", "answer", reply.answer));
    box.dataset.rule = reply.rule;
    box.dataset.handoff = String(Boolean(reply.handoff));
    const meta = el("div", "meta");
    meta.appendChild(el("span", "badge " + reply.source, SOURCE_LABEL[reply.source] || reply.source));
    if (reply.handoff) meta.appendChild(el("span", "handoff", "已转人工 handed off"));
    meta.appendChild(el("span", "rule", "rule: " + reply.rule));
    const name = THRESHOLD_NAME[reply.rule];
    if (name) {
      meta.appendChild(el("span", "score", "score " + fmt(reply.score) + " / " + name + " " + fmt(reply.threshold)));
    } else if (reply.evidence) {
      meta.appendChild(el("span", "evidence", "matched: " + reply.evidence));
    }
    if (reply.timings_ms && reply.timings_ms.total !== undefined) {
      meta.appendChild(el("span", "timing", Math.round(reply.timings_ms.total) + " ms"));
    }
    box.appendChild(meta);
    if (reply.candidates && reply.candidates.length) box.appendChild(candidatesTable(reply.candidates));
    log.appendChild(box);
  }

  function addMessage(cls, text) { log.appendChild(el("div", "msg " + cls, text)); }

  showCandidates.addEventListener("change", () => {
    document.querySelectorAll("table.cands").forEach((t) => t.classList.toggle("hidden", !showCandidates.checked));
  });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const query = input.value.trim();
    if (!query) return;
    addMessage("me", query);
    input.value = "";
    send.disabled = true;
    // A waiting indicator while the reply is computed (generation can take a second).
    const pending = el("div", "msg pending");
    pending.setAttribute("role", "status");
    pending.appendChild(el("span", "", "正在思考 thinking"));
    pending.appendChild(el("span", "dots"));
    log.appendChild(pending);
    log.scrollTop = log.scrollHeight;
    try {
      const res = await fetch("/api/chat", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ query: query, session_id: sessionId }),
      });
      const body = await res.json();
      if (!res.ok) addMessage("error", "错误 error: " + (body.error || res.status));
      else addBotReply(body);
    } catch (err) {
      addMessage("error", "网络错误 network error: " + err);
    } finally {
      pending.remove();
      send.disabled = false;
      input.focus();
      log.scrollTop = log.scrollHeight;
    }
  });
})();

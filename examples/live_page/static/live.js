"use strict";
// One task's transcript, live, from its event stream (the browser's own
// EventSource). Each SSE event is named for its wire type and carries the
// JSON envelope: {"id", "type", "sequence", "taskId", ..., "data"}.
//
// Event data goes into the page only as text (textContent, never innerHTML),
// and a link's address only when it is http(s): what an agent writes cannot
// become markup or script here.
(function () {
  const byId = (id) => document.getElementById(id);
  const statusEl = byId("status");
  const connectionEl = byId("connection");
  let finished = false;

  function el(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (className) node.className = className;
    return node;
  }

  function asJson(value) {
    return JSON.stringify(value === undefined ? null : value);
  }

  function httpUrl(value) {
    try {
      const url = new URL(String(value), window.location.href);
      return url.protocol === "https:" || url.protocol === "http:" ? url.href : null;
    } catch (error) {
      return null;
    }
  }

  function setStatus(status, final) {
    if (!status) return;
    statusEl.textContent = status;
    statusEl.dataset.status = status;
    statusEl.dataset.state = final ? "final" : "live";
  }

  function activity(text) {
    byId("activity").append(el("li", text));
  }

  function toolCall(data) {
    const found = Array.from(byId("tools").children).find(
      (item) => item.dataset.callId === String(data.toolCallId),
    );
    if (found) return found;
    const item = el("li", null, "tool-call");
    item.dataset.callId = String(data.toolCallId);
    item.append(
      el("strong", data.toolName, "tool-name"),
      el("code", asJson(data.payload), "tool-payload"),
      el("span", "running…", "tool-result"),
    );
    byId("tools").append(item);
    return item;
  }

  const source = new EventSource(document.body.dataset.eventsUrl);

  function on(type, render) {
    source.addEventListener(type, (message) => {
      const envelope = JSON.parse(message.data);
      render(envelope.data || {}, envelope);
    });
  }

  on("task.created", (task) => setStatus(task.status));
  on("task.updated", (data) => {
    setStatus(data.status);
    if (data.summary) activity(data.summary);
  });
  on("message.chunk", (text) => {
    byId("answer").append(el("span", text, "chunk"));
  });
  on("tool_call.requested", (data) => {
    const item = toolCall(data);
    if (data.reasoning) item.title = String(data.reasoning);
  });
  on("tool_call.completed", (data) => {
    const item = toolCall(data);
    item.classList.add(data.isError ? "failed" : "succeeded");
    item.querySelector(".tool-result").textContent =
      (data.isError ? "failed: " : "result: ") + asJson(data.result);
  });
  on("auth.required", (data) => {
    const item = el("li");
    const text = data.message || "Sign in to " + (data.provider || "continue");
    const href = httpUrl(data.authUrl);
    if (href) {
      const link = el("a", text, "auth-link");
      link.href = href;
      link.target = "_blank";
      link.rel = "noopener noreferrer";
      item.append(link);
    } else {
      item.append(el("span", text));
    }
    byId("auth").append(item);
    byId("auth-section").hidden = false;
  });
  on("reasoning.think", (data) => activity("Thinking: " + data.title + ". " + data.content));
  on("reasoning.analyze", (data) => activity("Analysing: " + data.title + ". " + data.content));
  on("plan.updated", (data) => {
    const steps = (data.steps || []).map((step) => el("li", step.title + " (" + step.status + ")"));
    byId("plan").replaceChildren(...steps);
  });
  on("subagent.triggered", (data) => activity("Sub-agent " + data.agentId + ": " + data.prompt));
  on("task.compacted", (data) =>
    activity(
      "Context compacted: " + data.summary + " (" + data.tokensBefore + " → " +
        data.tokensAfter + " tokens)",
    ),
  );
  on("task.reviewed", (data) => activity("Review: " + data.reviewOutcome + ". " + data.summary));
  on("task.shipped", (data) =>
    activity("Shipped to " + data.targetEnvironment + ": " + data.shipStatus),
  );
  on("task.finished", (task) => {
    finished = true;
    source.close(); // or the browser reconnects (and gets 204)
    setStatus(task.status, true);
    connectionEl.textContent = "";
    byId("final-status").textContent = "Finished: " + task.status;
    byId("result").textContent = task.error ? "Error: " + task.error : task.result || "";
    byId("final").hidden = false;
    document.body.dataset.finished = "true";
  });

  // Leaving the page: close the stream, so that the server lets go of it now.
  // Without this, a page kept in the back/forward cache keeps its stream open
  // (Chromium does). Coming back to such a page: load it anew, whole.
  window.addEventListener("pagehide", () => source.close());
  window.addEventListener("pageshow", (event) => {
    if (event.persisted && !finished) window.location.reload();
  });

  source.addEventListener("open", () => {
    connectionEl.textContent = "";
  });
  source.addEventListener("error", () => {
    if (finished) return;
    connectionEl.textContent =
      source.readyState === EventSource.CLOSED ? "(disconnected)" : "(reconnecting…)";
  });
})();

// The chat page: one websocket per conversation (protocol v1, docs/protocol.md).
// The server is the source of truth: the page renders what it is told, keeps `seq` per
// streaming reply, and resyncs (reconnect + reload of the message list) on any gap.

const root = document.getElementById("chat");

const MIN_BACKOFF_MS = 500;
const MAX_BACKOFF_MS = 10000;
const STICK_PX = 80;

// Django's JavaScript catalog (/jsi18n/, a classic script that runs before this module).
// Calls are spelled `gettext(...)` so `makemessages -d djangojs` finds them.
const gettext = typeof window.gettext === "function" ? window.gettext : (text) => text;
const LANGUAGE = document.documentElement.lang || undefined;
const TIME_FORMAT = new Intl.DateTimeFormat(LANGUAGE, { dateStyle: "short", timeStyle: "short" });

function newClientId() {
  if (crypto.randomUUID) return crypto.randomUUID();
  return `c${Date.now().toString(36)}${Math.random().toString(36).slice(2, 10)}`;
}

class ChatPage {
  constructor(el) {
    this.conversationId = el.dataset.conversationId;
    this.messagesUrl = el.dataset.messagesUrl;
    this.log = document.getElementById("log");
    this.form = document.getElementById("composer");
    this.input = document.getElementById("composer-input");
    this.sendButton = document.getElementById("send");
    this.stopButton = document.getElementById("stop");
    this.regenerateButton = document.getElementById("regenerate");
    this.indicator = document.getElementById("connection");
    this.notice = document.getElementById("notice");
    this.announcer = document.getElementById("announcer");
    this.composing = false;
    this.socket = null;
    this.backoff = MIN_BACKOFF_MS;
    this.everConnected = false;
    this.streaming = null; // {id, seq}
    this.pending = this.loadPending(); // {client_id, content}: sent, not yet acknowledged
    this.draftKey = `draft:${this.conversationId}`;
    this.bindComposer();
    this.bindRename(el.dataset.renameUrl);
    this.bindThinking();
    this.decorate(this.log);
    this.scrollToBottom(true);
    this.refreshButtons();
    this.connect();
  }

  // --- connection ---------------------------------------------------------------------
  setConnection(state, label) {
    this.indicator.dataset.state = state;
    this.indicator.textContent = label;
  }

  connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${location.host}/ws/conversations/${this.conversationId}/`);
    this.socket = socket;
    this.setConnection("connecting", gettext("Connecting…"));
    socket.addEventListener("message", (event) => {
      if (this.socket !== socket) return;
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return;
      }
      this.handle(frame);
    });
    socket.addEventListener("close", (event) => {
      if (this.socket !== socket) return;
      this.socket = null;
      if (event.code === 4401) {
        this.setConnection("offline", gettext("Signed out"));
        location.assign(`/accounts/login/?next=${encodeURIComponent(location.pathname)}`);
        return;
      }
      if (event.code === 4404) {
        this.setConnection("offline", gettext("Conversation not found"));
        return;
      }
      this.scheduleReconnect();
    });
  }

  scheduleReconnect() {
    this.setConnection("offline", gettext("Reconnecting…"));
    const delay = this.backoff * (0.75 + Math.random() * 0.5);
    this.backoff = Math.min(this.backoff * 2, MAX_BACKOFF_MS);
    setTimeout(() => this.resync(), delay);
  }

  async resync() {
    // Reload the stored messages (anything finished while we were away), then reconnect;
    // the first frame (`state`) brings the exact text of a reply still streaming.
    try {
      const response = await fetch(this.messagesUrl, { credentials: "same-origin" });
      if (response.ok) {
        const html = await response.text();
        const template = document.createElement("template");
        template.innerHTML = html;
        this.replaceLog(template.content);
      } else if (response.status === 404 || response.redirected) {
        location.reload();
        return;
      }
    } catch {
      // Offline: the socket attempt below fails too and schedules the next try.
    }
    this.connect();
  }

  forceResync() {
    const socket = this.socket;
    this.socket = null;
    if (socket) socket.close();
    this.resync();
  }

  send(frame) {
    if (this.socket && this.socket.readyState === WebSocket.OPEN) {
      this.socket.send(JSON.stringify(frame));
      return true;
    }
    return false;
  }

  // --- frames -------------------------------------------------------------------------
  handle(frame) {
    switch (frame.type) {
      case "state":
        this.onState(frame);
        break;
      case "message":
        this.onMessage(frame.message);
        break;
      case "delta":
      case "thinking":
        this.onDelta(frame);
        break;
      case "done":
        this.onDone(frame);
        break;
      case "error":
        this.onError(frame);
        break;
      case "superseded":
        for (const id of frame.message_ids) this.article(id)?.remove();
        this.refreshButtons();
        break;
      case "conversation":
        this.setTitle(frame.conversation.title);
        break;
      case "deleted":
        location.assign("/");
        break;
      default:
        // Unknown frame types are ignored: newer servers may add some.
        break;
    }
  }

  onState(frame) {
    this.backoff = MIN_BACKOFF_MS;
    this.everConnected = true;
    this.setConnection("online", gettext("Connected"));
    const generation = frame.generation;
    this.streaming = null;
    if (generation) {
      const article = this.article(generation.message_id) || this.appendArticle({
        id: generation.message_id, role: "assistant", status: "streaming", content: "",
      });
      this.streaming = { id: generation.message_id, seq: generation.seq };
      this.setStatus(article, "streaming");
      this.body(article).textContent = generation.text;
      if (generation.thinking) {
        const text = this.thinkingText(article, true);
        text.textContent = generation.thinking;
        // Still thinking (no answer yet): show it; otherwise it stays folded.
        const details = text.closest("details");
        if (!details.dataset.userToggled) details.open = !generation.text;
      }
    } else {
      // Nothing streams: any article still marked streaming is stale; fetch the truth.
      const stale = this.log.querySelector('article[data-status="streaming"]');
      if (stale) {
        this.forceResync();
        return;
      }
    }
    this.resendPending();
    this.refreshButtons();
    this.scrollToBottom();
  }

  onMessage(message) {
    let article = this.article(message.id);
    if (!article && message.client_id) {
      article = this.log.querySelector(`article[data-client-id="${CSS.escape(message.client_id)}"]`);
      if (article) {
        article.dataset.messageId = message.id;
        article.id = `m-${message.id}`;
      }
    }
    if (message.client_id && this.pending && this.pending.client_id === message.client_id) {
      this.setPending(null);
    }
    if (message.role === "assistant" && message.status === "streaming") {
      this.streaming = { id: message.id, seq: 0 };
    }
    if (!article) article = this.appendArticle(message);
    this.setStatus(article, message.status);
    this.refreshButtons();
    this.scrollToBottom();
  }

  onDelta(frame) {
    if (!this.streaming || this.streaming.id !== frame.message_id) {
      if (this.article(frame.message_id)) return;
      this.forceResync();
      return;
    }
    if (frame.seq <= this.streaming.seq) return; // already shown
    if (frame.seq !== this.streaming.seq + 1) {
      // A frame was lost (the channel layer drops under pressure): start over from the
      // server's authoritative text.
      this.forceResync();
      return;
    }
    this.streaming.seq = frame.seq;
    const article = this.article(frame.message_id);
    if (!article) return;
    const stick = this.isNearBottom();
    if (frame.type === "thinking") {
      // Open while the model thinks (unless the person folded it)...
      const text = this.thinkingText(article, true);
      const details = text.closest("details");
      if (!details.dataset.userToggled) details.open = true;
      text.append(frame.text);
    } else {
      // ... and folded as soon as the answer starts.
      const details = article.querySelector(".message__thinking");
      if (details && details.open && !details.dataset.userToggled) details.open = false;
      this.body(article).append(frame.text);
    }
    if (stick) this.scrollToBottom(true);
  }

  onDone(frame) {
    const stick = this.isNearBottom();
    const article = this.article(frame.message_id) || this.appendArticle({
      id: frame.message_id, role: "assistant", status: frame.status, content: "",
    });
    const body = this.body(article);
    body.classList.remove("message__body--plain");
    body.innerHTML = frame.html; // rendered and sanitised by the server (nh3)
    if (frame.thinking) {
      const text = this.thinkingText(article, true);
      text.textContent = frame.thinking;
      const details = text.closest("details");
      if (!details.dataset.userToggled) details.open = false;
    }
    if (this.streaming && this.streaming.id === frame.message_id) this.streaming = null;
    this.setStatus(article, frame.status);
    article.querySelector(".message__error")?.remove();
    if (frame.error) this.showArticleError(article, frame.error.code, frame.error.message);
    this.decorate(article);
    this.refreshButtons();
    this.announceDone(frame.status);
    if (stick) this.scrollToBottom(true);
  }

  onError(frame) {
    if (frame.message_id) {
      const article = this.article(frame.message_id);
      if (article && !article.querySelector(".message__error")) {
        this.showArticleError(article, frame.code, frame.message);
      }
      return;
    }
    // A refused request stored nothing. Whatever the reason, a refusal of the pending send
    // gives its text back: the server echoes that send's client_id (a refusal naming none
    // is of a frame it could not read, such as one dropped as too many frames).
    if (this.pending && (!frame.client_id || frame.client_id === this.pending.client_id)) {
      const article = this.log.querySelector(`article[data-client-id="${CSS.escape(this.pending.client_id)}"]`);
      if (article && !article.dataset.messageId) article.remove();
      if (!this.input.value) {
        this.input.value = this.pending.content;
        localStorage.setItem(this.draftKey, this.input.value); // a draft again, kept on reload
      }
      this.setPending(null);
      this.autosize();
    }
    this.showNotice(frame.message);
    this.refreshButtons();
  }

  // --- composer -----------------------------------------------------------------------
  bindComposer() {
    const saved = localStorage.getItem(this.draftKey);
    if (saved && !this.input.value) this.input.value = saved;
    this.autosize();
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.submit();
    });
    // Never send while an input method is composing (Chinese, Japanese, ...): the Enter
    // that picks a candidate is not a send. Browsers flag it with isComposing or keyCode
    // 229; the composition events cover those that do neither.
    this.input.addEventListener("compositionstart", () => { this.composing = true; });
    this.input.addEventListener("compositionend", () => { this.composing = false; });
    this.input.addEventListener("keydown", (event) => {
      if (event.isComposing || event.keyCode === 229 || this.composing) return;
      if (event.key === "Enter" && !event.shiftKey && !event.altKey && !event.ctrlKey && !event.metaKey) {
        event.preventDefault();
        this.submit();
      }
    });
    this.input.addEventListener("input", () => {
      this.autosize();
      this.saveDraft();
    });
    this.stopButton.addEventListener("click", () => this.stop());
    this.regenerateButton.addEventListener("click", () => this.regenerate());
    // The Retry button inside a failed reply's alert does what Regenerate does.
    this.log.addEventListener("click", (event) => {
      if (event.target.closest("[data-retry]")) this.regenerate();
    });
    document.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && this.streaming) {
        event.preventDefault();
        this.stop();
      }
    });
  }

  regenerate() {
    this.hideNotice();
    if (!this.send({ type: "regenerate" })) this.showNotice(gettext("Not connected. Try again in a moment."));
    // The button disappears while the new reply streams: keep the focus somewhere useful.
    this.input.focus();
  }

  saveDraft() {
    clearTimeout(this.draftTimer);
    this.draftTimer = setTimeout(() => {
      if (this.input.value) localStorage.setItem(this.draftKey, this.input.value);
      else localStorage.removeItem(this.draftKey);
    }, 300);
  }

  autosize() {
    // Grow with the text, up to a cap (then the textarea scrolls).
    const el = this.input;
    const cap = 320;
    // At the cap and still overflowing: nothing changes, and skipping the reset saves a
    // second layout per keystroke in a long (pasted) text.
    if (el.offsetHeight >= cap && el.scrollHeight > el.clientHeight) return;
    el.style.height = "auto";
    el.style.height = `${Math.min(el.scrollHeight, cap)}px`;
  }

  submit() {
    const content = this.input.value;
    if (!content.trim()) return;
    if (this.streaming || this.pending) {
      this.showNotice(gettext("A reply is still being written. Wait for it to finish or press Stop."));
      return;
    }
    this.hideNotice();
    const clientId = newClientId();
    this.setPending({ client_id: clientId, content });
    this.appendArticle({ role: "user", status: "sending", content, client_id: clientId });
    this.input.value = "";
    localStorage.removeItem(this.draftKey);
    this.autosize();
    this.send({ type: "send", content, client_id: clientId });
    this.refreshButtons();
    this.scrollToBottom(true);
    this.input.focus();
  }

  resendPending() {
    // Exactly once per connection; the server ignores a client_id it has already stored.
    if (!this.pending) return;
    const stored = this.log.querySelector(`article[data-client-id="${CSS.escape(this.pending.client_id)}"][data-message-id]`);
    if (stored) {
      this.setPending(null);
      return;
    }
    if (!this.log.querySelector(`article[data-client-id="${CSS.escape(this.pending.client_id)}"]`)) {
      this.appendArticle({ role: "user", status: "sending", content: this.pending.content, client_id: this.pending.client_id });
    }
    this.send({ type: "send", content: this.pending.content, client_id: this.pending.client_id });
  }

  loadPending() {
    try {
      return JSON.parse(sessionStorage.getItem(`pending:${root.dataset.conversationId}`) || "null");
    } catch {
      return null;
    }
  }

  setPending(value) {
    this.pending = value;
    const key = `pending:${this.conversationId}`;
    if (value) sessionStorage.setItem(key, JSON.stringify(value));
    else sessionStorage.removeItem(key);
  }

  stop() {
    if (!this.send({ type: "stop" })) this.showNotice(gettext("Not connected. Try again in a moment."));
    this.input.focus();
  }

  refreshButtons() {
    const streaming = Boolean(this.streaming);
    this.stopButton.hidden = !streaming;
    this.sendButton.disabled = streaming || Boolean(this.pending);
    const articles = this.log.querySelectorAll("article");
    const last = articles[articles.length - 1];
    this.regenerateButton.hidden = streaming || !last || last.dataset.role !== "assistant";
    if (!streaming && last && last.dataset.role === "user" && last.dataset.messageId && !this.pending) {
      // A question without an answer (e.g. the reply failed to start): offer to answer it.
      this.regenerateButton.hidden = false;
    }
    document.getElementById("log-empty")?.toggleAttribute("hidden", articles.length > 0);
    this.refreshRetry(streaming ? null : last);
    this.updateLiveRegion();
  }

  refreshRetry(last) {
    // One Retry button, in the alert of the last reply if that reply failed.
    const failed = last && last.dataset.role === "assistant" && ["error", "interrupted"].includes(last.dataset.status);
    this.log.querySelectorAll("[data-retry]").forEach((button) => {
      if (!failed || !last.contains(button)) button.remove();
    });
    if (!failed) return;
    const alert = last.querySelector(".message__error");
    if (!alert || alert.querySelector("[data-retry]")) return;
    const button = document.createElement("button");
    button.type = "button";
    button.className = "button button--small message__retry";
    button.dataset.retry = "";
    button.textContent = gettext("Retry");
    alert.append(" ", button);
  }

  announceDone(status) {
    // Screen readers hear one sentence per reply, not every token (the log is quiet while
    // a reply streams). Failures announce themselves through their role="alert".
    const sentences = {
      complete: gettext("Reply complete."),
      stopped: gettext("Reply stopped."),
    };
    const sentence = sentences[status];
    if (!sentence || !this.announcer) return;
    this.announcer.textContent = "";
    // A new text node on the next frame: announced even if it is the same sentence again.
    requestAnimationFrame(() => { this.announcer.textContent = sentence; });
  }

  // --- title --------------------------------------------------------------------------
  bindRename(renameUrl) {
    const title = document.getElementById("chat-title");
    const form = document.getElementById("rename-form");
    const input = document.getElementById("rename-input");
    const button = document.getElementById("rename-button");
    const open = (show) => {
      form.hidden = !show;
      title.hidden = show;
      button.hidden = show;
      if (show) {
        input.value = title.textContent;
        input.select();
        input.focus();
      } else {
        button.focus();
      }
    };
    button.addEventListener("click", () => open(true));
    document.getElementById("rename-cancel").addEventListener("click", () => open(false));
    input.addEventListener("keydown", (event) => {
      if (event.key === "Escape") {
        event.preventDefault();
        event.stopPropagation();
        open(false);
      }
    });
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const body = new FormData(form);
      try {
        const response = await fetch(renameUrl, {
          method: "POST", body, credentials: "same-origin", headers: { Accept: "application/json" },
        });
        const data = await response.json();
        if (!response.ok) {
          this.showNotice((data.errors || []).join(" ") || gettext("Could not rename."));
          return;
        }
        this.hideNotice();
        this.setTitle(data.title);
        open(false);
      } catch {
        this.showNotice(gettext("Not connected. Try again in a moment."));
      }
    });
  }

  setTitle(text) {
    const title = document.getElementById("chat-title");
    if (title) title.textContent = text;
    document.title = `${text} · ${document.title.split(" · ").pop()}`;
    const link = document.querySelector(`#conversation-list a[data-conversation-id="${CSS.escape(this.conversationId)}"]`);
    if (link) link.textContent = text;
  }

  // --- DOM ----------------------------------------------------------------------------
  article(id) {
    return id ? this.log.querySelector(`article[data-message-id="${CSS.escape(id)}"]`) : null;
  }

  body(article) {
    return article.querySelector(".message__body");
  }

  thinkingText(article, create) {
    let text = article.querySelector(".message__thinking-text");
    if (!text && create) {
      const details = document.createElement("details");
      details.className = "message__thinking";
      const summary = document.createElement("summary");
      summary.textContent = gettext("Thinking");
      text = document.createElement("div");
      text.className = "message__thinking-text";
      details.append(summary, text);
      this.body(article).before(details);
    }
    return text;
  }

  appendArticle(message) {
    const article = document.createElement("article");
    article.className = `message message--${message.role}`;
    article.dataset.role = message.role;
    article.dataset.status = message.status;
    if (message.id) {
      article.dataset.messageId = message.id;
      article.id = `m-${message.id}`;
    }
    if (message.client_id) article.dataset.clientId = message.client_id;
    const meta = document.createElement("header");
    meta.className = "message__meta";
    const author = document.createElement("span");
    author.className = "message__author";
    author.textContent = message.role === "user" ? gettext("You") : gettext("Assistant");
    const time = document.createElement("time");
    time.className = "message__time";
    time.dateTime = new Date().toISOString();
    const status = document.createElement("span");
    status.className = "message__status";
    status.dataset.statusLabel = "";
    meta.append(author, time, status);
    this.localiseTimes(meta);
    const body = document.createElement("div");
    body.className = "message__body message__body--plain";
    body.textContent = message.content || "";
    article.append(meta, body);
    this.log.append(article);
    this.setStatus(article, message.status);
    document.getElementById("log-empty")?.setAttribute("hidden", "");
    return article;
  }

  replaceLog(fragment) {
    this.log.querySelectorAll("article").forEach((a) => a.remove());
    this.log.append(fragment);
    this.decorate(this.log);
    this.refreshButtons();
    this.scrollToBottom(true);
  }

  setStatus(article, status) {
    article.dataset.status = status;
    const labels = {
      streaming: gettext("writing…"),
      sending: gettext("sending…"),
      stopped: gettext("stopped"),
      error: gettext("failed"),
      interrupted: gettext("interrupted"),
    };
    const label = article.querySelector("[data-status-label]");
    if (label) label.textContent = labels[status] || "";
    // A streaming reply is busy, and the log stops being a live region until it is done:
    // completed replies are announced once, by announceDone.
    if (status === "streaming") article.setAttribute("aria-busy", "true");
    else article.removeAttribute("aria-busy");
    this.updateLiveRegion();
  }

  updateLiveRegion() {
    const busy = Boolean(this.log.querySelector('article[data-status="streaming"]'));
    this.log.setAttribute("aria-live", busy ? "off" : "polite");
  }

  showArticleError(article, code, message) {
    const p = document.createElement("p");
    p.className = "message__error";
    p.setAttribute("role", "alert");
    const codeEl = document.createElement("span");
    codeEl.className = "message__error-code";
    codeEl.textContent = code;
    const textEl = document.createElement("span");
    textEl.className = "message__error-text";
    textEl.textContent = message;
    p.append(codeEl, " ", textEl);
    article.append(p);
    const articles = this.log.querySelectorAll("article");
    if (!this.streaming) this.refreshRetry(articles[articles.length - 1]);
  }

  showNotice(text) {
    this.notice.textContent = text;
    this.notice.hidden = false;
  }

  hideNotice() {
    this.notice.hidden = true;
    this.notice.textContent = "";
  }

  bindThinking() {
    // A person who opens or folds a reasoning block decides from then on, not the stream.
    this.log.addEventListener("click", (event) => {
      const summary = event.target.closest(".message__thinking > summary");
      if (summary) summary.parentElement.dataset.userToggled = "1";
    });
  }

  localiseTimes(scope) {
    // The server writes times in its own zone; show them in the reader's.
    scope.querySelectorAll("time[datetime]").forEach((el) => {
      const when = new Date(el.dateTime);
      if (!Number.isNaN(when.getTime())) el.textContent = TIME_FORMAT.format(when);
    });
  }

  decorate(scope) {
    this.localiseTimes(scope);
    // A Copy button on every code block of a finished reply.
    scope.querySelectorAll('article[data-role="assistant"] pre').forEach((pre) => {
      if (pre.parentElement.classList.contains("code")) return;
      const wrap = document.createElement("div");
      wrap.className = "code";
      const button = document.createElement("button");
      button.type = "button";
      button.className = "code__copy";
      button.textContent = gettext("Copy");
      button.addEventListener("click", async () => {
        try {
          await navigator.clipboard.writeText(pre.innerText);
          button.textContent = gettext("Copied");
        } catch {
          button.textContent = gettext("Copy failed");
        }
        setTimeout(() => { button.textContent = gettext("Copy"); }, 1500);
      });
      pre.replaceWith(wrap);
      wrap.append(button, pre);
    });
  }

  isNearBottom() {
    const el = this.log;
    return el.scrollHeight - el.scrollTop - el.clientHeight < STICK_PX;
  }

  scrollToBottom(force = false) {
    // Follow the reply unless the person scrolled up to read.
    if (force || this.isNearBottom()) this.log.scrollTop = this.log.scrollHeight;
  }
}

if (root) {
  window.chatPage = new ChatPage(root);
}

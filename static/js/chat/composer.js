// The composer: typing (an Enter that picks an input-method candidate is not a send; the box
// grows with the text; a draft per conversation), the one send in flight, Stop, and the
// regenerate request of a reply's Regenerate and Retry buttons. A send stays pending, in sessionStorage so a reload keeps it too, until the
// server stores it (a `message` with its client_id) or refuses it (an `error` echoing
// that client_id). After a reconnect it goes again with the same client_id, which the
// server stores at most once.
import { gettext } from "./i18n.js";
import { hideNotice, showNotice } from "./notice.js";

// Past this height the box scrolls: the page keeps room for the conversation.
const MAX_HEIGHT_PX = 320;
const DRAFT_SAVE_DELAY_MS = 300;

function newClientId() {
  if (crypto.randomUUID) return crypto.randomUUID();
  return `c${Date.now().toString(36)}${Math.random().toString(36).slice(2, 10)}`;
}

export class Composer {
  constructor({ conversationId, connection, messages, uploads, isStreaming, refreshPage, beforeFirstSend }) {
    this.connection = connection;
    this.uploads = uploads; // files for the next message (uploads.js)
    this.messages = messages;
    this.isStreaming = isStreaming;
    this.refreshPage = refreshPage;
    this.form = document.getElementById("composer");
    this.input = document.getElementById("composer-input");
    this.sendButton = document.getElementById("send");
    this.stopButton = document.getElementById("stop");
    // The home page has no conversation until its first send (`beforeFirstSend` makes it).
    this.beforeFirstSend = beforeFirstSend || null;
    this.draftKey = `draft:${conversationId || "home"}`;
    this.pendingKey = `pending:${conversationId || "home"}`;
    this.pending = this.loadPending(); // {client_id, content}: sent, not yet stored or refused
    this.composing = false;
    const draft = localStorage.getItem(this.draftKey);
    if (draft && !this.input.value) this.input.value = draft;
    this.autosize();
    this.bind();
  }

  bind() {
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
      this.saveDraftSoon();
    });
    this.stopButton.addEventListener("click", () => this.stop());
    // The Retry button in a failed reply's alert does what that reply's Regenerate does.
    this.messages.log.addEventListener("click", (event) => {
      const retry = event.target.closest("[data-retry]");
      if (retry) this.regenerate(retry.closest("article")?.dataset.messageId);
    });
    document.addEventListener("keydown", (event) => {
      // Not Shift+Esc (back to the message box) nor an Escape that closes a dialog or menu.
      if (event.shiftKey || event.defaultPrevented || document.querySelector("dialog[open]")) return;
      if (event.key === "Escape" && this.isStreaming()) {
        event.preventDefault();
        this.stop();
      }
    });
  }

  async submit() {
    if (this.creating) return;
    const content = this.input.value;
    const files = this.uploads.ready();
    if (!content.trim() && !files.length) return;
    if (this.isStreaming() || this.pending) {
      showNotice(gettext("A reply is still being written. Wait for it to finish or press Stop."));
      return;
    }
    if (this.uploads.busy()) {
      showNotice(gettext("Wait until the files are uploaded."));
      return;
    }
    hideNotice();
    if (this.beforeFirstSend) {
      // The home page: the conversation first (the text stays in the box until it exists).
      // The box is read-only meanwhile: what is sent is what it shows.
      this.creating = true;
      this.sendButton.disabled = true;
      this.input.readOnly = true;
      try {
        await this.beforeFirstSend();
      } catch (error) {
        showNotice(error.message || gettext("Not connected. Try again in a moment."));
        return;
      } finally {
        this.creating = false;
        this.input.readOnly = false;
        this.refreshPage();
      }
    }
    const clientId = newClientId();
    this.setPending({ client_id: clientId, content, attachments: files });
    this.messages.append({ role: "user", status: "sending", content, client_id: clientId, attachments: files });
    this.input.value = "";
    this.uploads.clear();
    localStorage.removeItem(this.draftKey);
    this.autosize();
    // Not connected: it goes when the socket is back (resendPending).
    this.connection.send({ type: "send", content, client_id: clientId, attachments: files.map((file) => file.id) });
    this.refreshPage();
    this.messages.scrollToBottom(true);
    this.input.focus();
  }

  // The home page's conversation exists now: its draft and pending send keys from now on.
  adopt(conversationId) {
    this.beforeFirstSend = null;
    localStorage.removeItem(this.draftKey);
    sessionStorage.removeItem(this.pendingKey);
    this.draftKey = `draft:${conversationId}`;
    this.pendingKey = `pending:${conversationId}`;
    this.setPending(this.pending);
  }

  // On every new connection (its `state` frame), once.
  resendPending() {
    if (!this.pending) return;
    const article = this.messages.findSent(this.pending.client_id);
    if (article && article.dataset.messageId) {
      // Stored meanwhile (the reloaded list has it).
      this.setPending(null);
      return;
    }
    const files = this.pending.attachments || [];
    if (!article) {
      this.messages.append({ role: "user", status: "sending", content: this.pending.content, client_id: this.pending.client_id, attachments: files });
    }
    this.connection.send({
      type: "send", content: this.pending.content, client_id: this.pending.client_id, attachments: files.map((file) => file.id),
    });
  }

  acknowledge(clientId) {
    if (clientId && this.pending && this.pending.client_id === clientId) this.setPending(null);
  }

  // A refused request (an `error` without message_id). If it refused the pending send, give
  // the text back, whatever the reason: nothing was stored. The server echoes the refused
  // send's client_id; a refusal naming none is of a frame it could not read (too many
  // frames, too large), which while a send is pending is taken to be that send.
  refused(frame) {
    const pending = this.pending;
    if (!pending || (frame.client_id && frame.client_id !== pending.client_id)) return;
    if (frame.code === "server_restarting") {
      // The server is draining before a restart: the send stays pending and goes again,
      // with the same client_id, once the page has reconnected (resendPending).
      const article = this.messages.findSent(pending.client_id);
      if (article) this.messages.setStatus(article, "waiting");
      return;
    }
    const article = this.messages.findSent(pending.client_id);
    if (article && !article.dataset.messageId) article.remove();
    // Text typed since is not overwritten.
    if (!this.input.value) {
      this.input.value = pending.content;
      this.saveDraft(); // a draft again, kept on reload
    }
    // The files are still uploaded and unsent: back to the composer with the text.
    this.uploads.restore(pending.attachments || []);
    this.setPending(null);
    this.autosize();
  }

  stop() {
    if (!this.connection.send({ type: "stop" })) showNotice(gettext("Not connected. Try again in a moment."));
    this.input.focus();
  }

  // A new version of the reply `messageId` (without one: the last reply shown).
  regenerate(messageId) {
    hideNotice();
    const frame = messageId ? { type: "regenerate", message_id: messageId } : { type: "regenerate" };
    if (!this.connection.send(frame)) showNotice(gettext("Not connected. Try again in a moment."));
    // The button disappears while the new reply is written: keep the focus somewhere useful.
    this.input.focus();
  }

  // Send and Stop, for the reply being written (or not).
  refresh(streaming) {
    this.stopButton.hidden = !streaming;
    this.sendButton.disabled = streaming || Boolean(this.pending) || this.uploads.busy() || Boolean(this.creating);
  }

  autosize() {
    // Grow with the text, up to a cap (then the textarea scrolls).
    const el = this.input;
    // At the cap and still overflowing: nothing changes, and skipping the reset saves a
    // second layout per keystroke in a long (pasted) text.
    if (el.offsetHeight >= MAX_HEIGHT_PX && el.scrollHeight > el.clientHeight) return;
    el.style.height = "auto";
    el.style.height = `${Math.min(el.scrollHeight, MAX_HEIGHT_PX)}px`;
  }

  saveDraftSoon() {
    // After a pause in typing, not on every keystroke.
    clearTimeout(this.draftTimer);
    this.draftTimer = setTimeout(() => this.saveDraft(), DRAFT_SAVE_DELAY_MS);
  }

  saveDraft() {
    clearTimeout(this.draftTimer);
    if (this.input.value) localStorage.setItem(this.draftKey, this.input.value);
    else localStorage.removeItem(this.draftKey);
  }

  loadPending() {
    try {
      return JSON.parse(sessionStorage.getItem(this.pendingKey) || "null");
    } catch {
      return null;
    }
  }

  setPending(value) {
    this.pending = value;
    if (value) sessionStorage.setItem(this.pendingKey, JSON.stringify(value));
    else sessionStorage.removeItem(this.pendingKey);
  }
}

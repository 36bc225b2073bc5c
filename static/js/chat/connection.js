// The conversation's websocket (protocol v1, docs/protocol.md). The server is the source of
// truth: after any doubt (a dropped socket, a lost frame) the page reloads the stored
// messages, then reconnects, and the socket's first frame (`state`) brings the exact text
// of a reply still being written.
import { gettext } from "./i18n.js";

const MIN_BACKOFF_MS = 500;
const MAX_BACKOFF_MS = 10000;
const CLOSE_NOT_SIGNED_IN = 4401;
const CLOSE_NOT_FOUND = 4404;
// The server is restarting (a deploy): it drained, and another process, or this one
// restarted, takes the page back.
const CLOSE_SERVICE_RESTART = 1012;

export class Connection {
  constructor({ conversationId, messagesUrl, onFrame, onMessages, since }) {
    // On the home page there is no conversation yet: `open` once its first send made one.
    if (conversationId) this.setConversation(conversationId, messagesUrl);
    this.onFrame = onFrame;
    // The rendered messages, as HTML: the newest page, or (with `known`) what follows that
    // message. `since()` says what the page has (history.js): false when it needs nothing.
    this.onMessages = onMessages;
    this.since = since || (() => null);
    this.socket = null;
    this.backoff = MIN_BACKOFF_MS;
    this.restarting = false; // closed with 1012: the server drains before a restart
  }

  setConversation(conversationId, messagesUrl) {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    this.url = `${scheme}://${location.host}/ws/conversations/${conversationId}/`;
    this.messagesUrl = messagesUrl;
  }

  // The home page's conversation, just created: its socket from now on.
  open(conversationId, messagesUrl) {
    this.setConversation(conversationId, messagesUrl);
    this.connect();
  }

  connect() {
    const socket = new WebSocket(this.url);
    this.socket = socket;
    this.show("connecting", gettext("Connecting…"));
    // A socket given up on (see resync) may still deliver or close: only the current counts.
    socket.addEventListener("message", (event) => {
      if (this.socket !== socket) return;
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return;
      }
      this.onFrame(frame);
    });
    socket.addEventListener("close", (event) => {
      if (this.socket !== socket) return;
      this.socket = null;
      if (event.code === CLOSE_NOT_SIGNED_IN) {
        this.show("offline", gettext("Signed out"));
        location.assign(`/accounts/login/?next=${encodeURIComponent(location.pathname)}`);
      } else if (event.code === CLOSE_NOT_FOUND) {
        this.show("offline", gettext("Conversation not found"));
      } else {
        // Until the server answers again, say why it went away, whatever the next failed
        // attempts close with.
        if (event.code === CLOSE_SERVICE_RESTART) this.restarting = true;
        this.reconnectLater();
      }
    });
  }

  // The server answered (its `state` frame): the next failure starts from the shortest wait.
  online() {
    this.backoff = MIN_BACKOFF_MS;
    this.restarting = false;
    this.show("online", gettext("Connected"));
  }

  // True if the frame went out; a send that did not is resent by the composer on `state`.
  send(frame) {
    if (this.socket && this.socket.readyState === WebSocket.OPEN) {
      this.socket.send(JSON.stringify(frame));
      return true;
    }
    return false;
  }

  // Start over from the server's truth now: a frame was lost, or a reply shown as being
  // written is not. `whole`: the newest page in place of everything (another thread shown).
  resync({ whole = false } = {}) {
    const socket = this.socket;
    this.socket = null;
    if (socket) socket.close();
    this.reload(whole);
  }

  reconnectLater() {
    this.show("offline", this.restarting ? gettext("Server restarting, reconnecting…") : gettext("Reconnecting…"));
    // Jittered and doubling: the pages of a restarted server do not all return at once.
    const delay = this.backoff * (0.75 + Math.random() * 0.5);
    this.backoff = Math.min(this.backoff * 2, MAX_BACKOFF_MS);
    setTimeout(() => this.reload(), delay);
  }

  async reload(whole = false) {
    // The stored messages first (anything that finished while we were away), then the socket.
    // Only what the page lacks: the messages after the last one it shows whole.
    const known = whole ? null : this.since();
    try {
      if (known === false) {
        this.connect();
        return;
      }
      const url = known ? `${this.messagesUrl}?since=${encodeURIComponent(known)}` : this.messagesUrl;
      const response = await fetch(url, { credentials: "same-origin" });
      // Deleted, or signed out (sent to the sign-in page, which answers 200): the page
      // itself says so.
      if (response.status === 404 || response.redirected) {
        location.reload();
        return;
      }
      if (response.ok) {
        const tail = response.headers.get("X-Thread-Part") === "since";
        this.onMessages(await response.text(), tail ? known : null);
      }
    } catch {
      // Offline: the socket below fails too, and its close schedules the next try.
    }
    this.connect();
  }

  show(state, label) {
    // Looked up each time: the home page's first send swaps in a new header (home.js).
    const indicator = document.getElementById("connection");
    indicator.dataset.state = state;
    indicator.textContent = label;
  }
}

// Applies the server's frames to the page. It keeps the `seq` of the reply being written:
// frames already shown are skipped, and a gap (channel layers drop frames under pressure)
// starts over from the server's text instead of showing a reply with a hole in it.
// The reply being written is rendered as Markdown as it grows (chat/live.js); its `done`
// frame brings the server's HTML, which replaces that rendering.
import { setSource } from "./copy.js";
import { decorate } from "./decorate.js";
import { LiveReply } from "./live.js";
import { showNotice } from "./notice.js";

export class Stream {
  constructor({ messages, connection, composer, refreshPage, showTitle, markdown }) {
    this.messages = messages;
    this.markdown = markdown; // chat/markdown.js, or null: the reply is shown as plain text
    this.live = null; // the LiveReply of the reply being written
    this.connection = connection;
    this.composer = composer;
    this.refreshPage = refreshPage;
    this.showTitle = showTitle;
    this.streaming = null; // {id, seq} of the reply being written
  }

  isStreaming() {
    return this.streaming !== null;
  }

  apply(frame) {
    switch (frame.type) {
      case "state":
        this.onState(frame.generation);
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
        for (const id of frame.message_ids) this.messages.find(id)?.remove();
        this.refreshPage();
        break;
      case "conversation":
        this.showTitle(frame.conversation.title);
        break;
      case "deleted":
        location.assign("/");
        break;
      default:
        // Unknown frame types are ignored: newer servers may add some.
        break;
    }
  }

  onState(generation) {
    this.connection.online();
    this.streaming = null;
    this.stopLive();
    if (generation) {
      this.streaming = { id: generation.message_id, seq: generation.seq };
      // The list was just rendered by the server: a reply it does not show is being written
      // on another thread of the conversation (versions.js). Followed, not shown.
      const article = this.messages.find(generation.message_id);
      if (!article) {
        this.composer.resendPending();
        this.refreshPage();
        return;
      }
      this.messages.setStatus(article, "streaming");
      this.startLive(article, generation.text);
      if (generation.thinking) {
        const text = this.messages.thinking(article);
        text.textContent = generation.thinking;
        // Still thinking (no answer yet): show it; otherwise it stays folded.
        const details = text.closest("details");
        if (!details.dataset.userToggled) details.open = !generation.text;
      }
    } else if (this.messages.showsAReplyBeingWritten()) {
      // Nothing is being written, yet the page shows a reply as if: it missed the end.
      this.connection.resync();
      return;
    }
    this.composer.resendPending();
    this.refreshPage();
    this.messages.scrollToBottom();
  }

  onMessage(message) {
    let article = this.messages.find(message.id);
    if (!article && message.client_id) {
      // One's own send, now stored: the article shown while sending gets its id.
      article = this.messages.findSent(message.client_id);
      if (article) this.messages.identify(article, message.id);
    }
    this.composer.acknowledge(message.client_id);
    if (message.role === "assistant" && message.status === "streaming") {
      this.streaming = { id: message.id, seq: 0 };
    }
    if (!article) article = this.messages.append(message);
    this.messages.setStatus(article, message.status);
    if (message.role === "assistant" && message.status === "streaming" && !this.isLive(article)) {
      this.startLive(article, message.content || "");
    }
    this.refreshPage();
    this.messages.scrollToBottom();
  }

  onDelta(frame) {
    if (!this.streaming || this.streaming.id !== frame.message_id) {
      // A late frame of a reply already finished here is harmless; of one never seen, not.
      if (!this.messages.find(frame.message_id)) this.connection.resync();
      return;
    }
    if (frame.seq <= this.streaming.seq) return; // already shown
    if (frame.seq !== this.streaming.seq + 1) {
      this.connection.resync();
      return;
    }
    this.streaming.seq = frame.seq;
    const article = this.messages.find(frame.message_id);
    if (!article) return;
    if (frame.type === "delta") {
      // The answer: its reasoning folds as soon as it starts (unless the person chose).
      const details = article.querySelector(".message__thinking");
      if (details && details.open && !details.dataset.userToggled) details.open = false;
      if (!this.isLive(article)) this.startLive(article, this.messages.body(article).textContent);
      this.live.append(frame.text); // shown at the next animation frame
      return;
    }
    // Reasoning: open while the model thinks (unless the person folded it).
    const stick = this.messages.isNearBottom();
    const text = this.messages.thinking(article);
    const details = text.closest("details");
    if (!details.dataset.userToggled) details.open = true;
    text.append(frame.text);
    if (stick) this.messages.scrollToBottom(true);
  }

  // Render the reply of `article` live from `text` on (replacing whatever it shows).
  startLive(article, text) {
    this.stopLive();
    this.live = new LiveReply(this.messages.body(article), this.markdown, (render) => {
      const stick = this.messages.isNearBottom();
      render();
      if (stick) this.messages.scrollToBottom(true);
    });
    this.live.set(text);
  }

  isLive(article) {
    return this.live !== null && this.live.body === this.messages.body(article);
  }

  stopLive() {
    this.live?.stop();
    this.live = null;
  }

  onDone(frame) {
    const stick = this.messages.isNearBottom();
    const article = this.messages.find(frame.message_id);
    if (!article) {
      // A reply of another thread (not shown here) ended.
      if (this.streaming && this.streaming.id === frame.message_id) this.streaming = null;
      this.refreshPage();
      return;
    }
    if (this.isLive(article)) this.stopLive();
    const body = this.messages.body(article);
    body.classList.remove("message__body--plain");
    body.innerHTML = frame.html; // rendered and sanitised by the server (nh3): the authority
    setSource(article, frame.content);
    if (frame.thinking) {
      const text = this.messages.thinking(article);
      text.textContent = frame.thinking;
      const details = text.closest("details");
      if (!details.dataset.userToggled) details.open = false;
    }
    this.messages.setModel(article, frame.model);
    this.messages.setUsage(article, frame.usage);
    if (this.streaming && this.streaming.id === frame.message_id) this.streaming = null;
    this.messages.setStatus(article, frame.status);
    article.querySelector(".message__error")?.remove();
    if (frame.error) this.messages.showError(article, frame.error.code, frame.error.message);
    decorate(article);
    this.refreshPage();
    this.messages.announce(frame.status);
    if (stick) this.messages.scrollToBottom(true);
  }

  onError(frame) {
    if (frame.message_id) {
      // A failed reply: its alert, unless its `done` brought one already.
      const article = this.messages.find(frame.message_id);
      if (article && !article.querySelector(".message__error")) {
        this.messages.showError(article, frame.code, frame.message);
        this.refreshPage();
      }
      return;
    }
    // A refused request stored nothing. Say why, always; if it was the pending send, the
    // composer takes its text back.
    this.composer.refused(frame);
    showNotice(frame.message);
    this.refreshPage();
  }
}

// The message list (#log): finds, adds and updates the articles of messages. Their markup is
// the server's: a new message is a clone from <template id="message-template">, which
// chat.html renders with the partial of the stored messages (_message.html), so a message
// shown live and the same message after a reload are the same markup.
import { decorate, localiseTimes } from "./decorate.js";
import { gettext, interpolate } from "./i18n.js";
import { formatSize } from "./uploads.js";

// Within this distance of the end, the list follows a growing reply.
const STICK_PX = 80;

export class MessageList {
  constructor(log, template) {
    this.log = log;
    this.prototypes = template.content;
    this.announcer = document.getElementById("announcer");
    // A person who opens or folds a reasoning block decides from then on, not the stream.
    log.addEventListener("click", (event) => {
      const summary = event.target.closest(".message__thinking > summary");
      if (summary) summary.parentElement.dataset.userToggled = "1";
    });
  }

  find(id) {
    return id ? this.log.querySelector(`article[data-message-id="${CSS.escape(id)}"]`) : null;
  }

  // The article of one's own send, found by the client_id it went with.
  findSent(clientId) {
    return this.log.querySelector(`article[data-client-id="${CSS.escape(clientId)}"]`);
  }

  last() {
    const articles = this.log.querySelectorAll("article");
    return articles[articles.length - 1] || null;
  }

  identify(article, id) {
    article.dataset.messageId = id;
    article.id = `m-${id}`;
  }

  // A new message ({id?, role, status, content, client_id?}) at the end of the list.
  append(message) {
    const article = this.prototypes.querySelector(`article[data-role="${message.role}"]`).cloneNode(true);
    // A reply's optional parts arrive with the frames that fill them (setModel, thinking,
    // showError), each cloned from the template again.
    article.querySelectorAll(".message__model, .message__tokens, .message__thinking, .message__error").forEach((part) => part.remove());
    if (message.id) this.identify(article, message.id);
    if (message.client_id) article.dataset.clientId = message.client_id;
    article.querySelector("time").dateTime = new Date().toISOString();
    localiseTimes(article);
    this.body(article).textContent = message.content || "";
    this.showFiles(article, message.attachments || []);
    this.log.append(article);
    this.setStatus(article, message.status);
    document.getElementById("log-empty")?.setAttribute("hidden", "");
    return article;
  }

  // A message's attached files ({id, name, media_type, size, url}), as _attachment.html shows them.
  showFiles(article, attachments) {
    const list = article.querySelector(".message__files");
    if (!list) return;
    if (!attachments.length) {
      list.remove();
      return;
    }
    for (const file of attachments) {
      const image = file.media_type.startsWith("image/");
      const item = this.prototypes.querySelector(image ? "li.attachment--image" : "li.attachment--file").cloneNode(true);
      item.querySelector("a").href = file.url;
      if (image) {
        const thumb = item.querySelector("img");
        thumb.src = file.url;
        thumb.alt = file.name;
      } else {
        item.querySelector(".attachment__icon").textContent = file.media_type === "application/pdf" ? "PDF" : "TXT";
        item.querySelector(".attachment__name").textContent = file.name;
        item.querySelector(".attachment__size").textContent = formatSize(file.size);
      }
      list.append(item);
    }
  }

  replyPart(selector) {
    return this.prototypes.querySelector(`article[data-role="assistant"] ${selector}`).cloneNode(true);
  }

  body(article) {
    return article.querySelector(".message__body");
  }

  // The element holding a reply's reasoning, its (folded) block added on first use.
  thinking(article) {
    let text = article.querySelector(".message__thinking-text");
    if (!text) {
      const details = this.replyPart(".message__thinking");
      details.open = false;
      this.body(article).before(details);
      text = details.querySelector(".message__thinking-text");
    }
    return text;
  }

  setModel(article, model) {
    if (!model) return;
    let label = article.querySelector(".message__model");
    if (!label) {
      label = this.replyPart(".message__model");
      article.querySelector(".message__author").after(label);
    }
    label.textContent = model;
  }

  // The tokens of a finished reply ({input_tokens, output_tokens}), after its time.
  setUsage(article, usage) {
    if (!usage || !usage.output_tokens) return;
    let label = article.querySelector(".message__tokens");
    if (!label) {
      label = this.replyPart(".message__tokens");
      article.querySelector(".message__time").after(label);
    }
    label.textContent = interpolate(gettext("%s in · %s out"), [usage.input_tokens || 0, usage.output_tokens]);
  }

  setStatus(article, status) {
    article.dataset.status = status;
    const labels = {
      streaming: gettext("writing…"),
      sending: gettext("sending…"),
      // Refused while the server restarts: sent again once the page reconnects.
      waiting: gettext("waiting for the server…"),
      stopped: gettext("stopped"),
      error: gettext("failed"),
      interrupted: gettext("interrupted"),
    };
    article.querySelector("[data-status-label]").textContent = labels[status] || "";
    // A reply being written is busy, and the log stops being a live region until it is
    // done: a finished reply is announced once, by `announce`, not token by token.
    if (status === "streaming") article.setAttribute("aria-busy", "true");
    else article.removeAttribute("aria-busy");
    this.updateLiveRegion();
  }

  showError(article, code, text) {
    const alert = this.replyPart(".message__error");
    alert.querySelector(".message__error-code").textContent = code;
    alert.querySelector(".message__error-text").textContent = text;
    // Where the server renders it: above the message's buttons.
    const actions = article.querySelector(".message__actions");
    if (actions) actions.before(alert);
    else article.append(alert);
  }

  // The stored messages, rendered by the server (after a reconnect or a lost frame).
  replace(html) {
    const template = document.createElement("template");
    template.innerHTML = html;
    // The markers of more to load (history.js) come with the new list.
    this.log.querySelectorAll("article, [data-history]").forEach((element) => element.remove());
    this.log.append(template.content);
    decorate(this.log);
  }

  // What follows from the list: its empty state, the one Retry button, the live region.
  refresh(streaming) {
    const last = this.last();
    document.getElementById("log-empty")?.toggleAttribute("hidden", Boolean(last));
    this.refreshRetry(streaming ? null : last);
    this.updateLiveRegion();
  }

  refreshRetry(last) {
    // Retry sits in the alert of the last reply, if that reply failed; nowhere else.
    const failed = last && last.dataset.role === "assistant" && ["error", "interrupted"].includes(last.dataset.status);
    this.log.querySelectorAll("[data-retry]").forEach((button) => {
      if (!failed || !last.contains(button)) button.remove();
    });
    if (!failed) return;
    const alert = last.querySelector(".message__error");
    if (!alert || alert.querySelector("[data-retry]")) return;
    // Built here, not in the template: without the script it could do nothing.
    const button = document.createElement("button");
    button.type = "button";
    button.className = "button button--small message__retry";
    button.dataset.retry = "";
    button.textContent = gettext("Retry");
    alert.append(" ", button);
  }

  showsAReplyBeingWritten() {
    return Boolean(this.log.querySelector('article[data-status="streaming"]'));
  }

  updateLiveRegion() {
    this.log.setAttribute("aria-live", this.showsAReplyBeingWritten() ? "off" : "polite");
  }

  announce(status) {
    // One sentence per reply for screen readers. Failures announce themselves through
    // their role="alert".
    const sentences = { complete: gettext("Reply complete."), stopped: gettext("Reply stopped.") };
    const sentence = sentences[status];
    if (!sentence || !this.announcer) return;
    this.announcer.textContent = "";
    // A new text node on the next frame: announced even if it is the same sentence again.
    requestAnimationFrame(() => { this.announcer.textContent = sentence; });
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

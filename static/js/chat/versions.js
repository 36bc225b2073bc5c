// Versions of a message (docs/protocol.md: `switch`, `edit`, `regenerate` with message_id,
// the `thread` frame). The buttons are the server's markup (_message.html): Previous
// version / Next version around "2 / 3", Edit on a question, Regenerate on a reply. Edit
// opens the question in place (Enter saves and sends, Shift+Enter a new line, Esc
// cancels; an Enter that picks an input-method candidate is not a save).
//
// When the shown thread changes (here or in any other tab) the server sends `thread`; the
// page then starts over from the server's truth (the rendered list, and `state` for a reply
// being written), as after a lost frame: one way to render a thread, the server's.
import { gettext } from "./i18n.js";
import { hideNotice, showNotice } from "./notice.js";

export class Versions {
  constructor({ messages, connection, composer }) {
    this.messages = messages;
    this.connection = connection;
    this.composer = composer;
    this.editTemplate = document.getElementById("edit-template");
    // After a switch from this page: the button to focus again once the thread is shown.
    this.refocus = null;
    this.queued = null; // a Previous/Next pressed while the last switch was on its way
    // The question being saved from the editor (kept open until the thread changes).
    this.saving = null;
    messages.log.addEventListener("click", (event) => this.onClick(event));
  }

  // Frames stream.js leaves to this module.
  apply(frame) {
    if (frame.type === "thread") {
      this.connection.resync({ whole: true });
    } else if (frame.type === "error" && !frame.message_id && this.saving) {
      // The edit was refused (the notice says why): the editor is still there, with the text.
      this.saving.querySelector('button[type="submit"]').disabled = false;
      this.saving = null;
    }
  }

  // The controls that depend on a reply being written: no Edit or Regenerate meanwhile.
  refresh(streaming) {
    this.messages.log.toggleAttribute("data-busy", streaming);
  }

  onClick(event) {
    const button = event.target.closest("button");
    if (!button || !this.messages.log.contains(button)) return;
    const article = button.closest("article");
    const id = article && article.dataset.messageId;
    if (button.dataset.switch) {
      if (this.refocus) {
        // Pressed again before the last switch is shown (its button is about to be
        // replaced): taken once the thread is shown, from the version it moved to.
        this.queued = button.dataset.direction;
        return;
      }
      this.refocus = { id: button.dataset.switch, direction: button.dataset.direction };
      if (!this.send({ type: "switch", message_id: button.dataset.switch })) this.refocus = null;
    } else if ("edit" in button.dataset && id) {
      this.openEditor(article);
    } else if ("regenerate" in button.dataset && id) {
      this.composer.regenerate(id);
    }
  }

  send(frame) {
    hideNotice();
    if (this.connection.send(frame)) return true;
    showNotice(gettext("Not connected. Try again in a moment."));
    return false;
  }

  // Called once the list was rendered again (after a `thread` frame, or any resync).
  shown() {
    const wanted = this.refocus;
    this.refocus = null;
    this.saving = null;
    if (!wanted) return;
    const article = this.messages.find(wanted.id);
    if (!article) return;
    // The same button as pressed, or its neighbour if this version is the last one that way.
    const buttons = [...article.querySelectorAll(".versions__button")];
    const same = buttons.find((b) => b.dataset.direction === wanted.direction && !b.disabled);
    const target = same || buttons.find((b) => !b.disabled);
    if (target) target.focus();
    const queued = this.queued;
    this.queued = null;
    if (queued && same && same.dataset.direction === queued) same.click();
  }

  openEditor(article) {
    if (article.querySelector(".editor")) return;
    const body = this.messages.body(article);
    const form = this.editTemplate.content.firstElementChild.cloneNode(true);
    const input = form.querySelector("textarea");
    input.value = body.textContent;
    body.hidden = true;
    article.classList.add("is-editing");
    body.after(form);
    let composing = false;
    const close = () => {
      form.remove();
      body.hidden = false;
      article.classList.remove("is-editing");
      if (this.saving === form) this.saving = null;
      article.querySelector("[data-edit]")?.focus();
    };
    const save = () => {
      if (this.saving === form) return;
      if (!input.value.trim()) {
        showNotice(gettext("Type a message before sending."));
        return;
      }
      if (!this.send({ type: "edit", message_id: article.dataset.messageId, content: input.value })) return;
      this.saving = form;
      form.querySelector('button[type="submit"]').disabled = true;
    };
    input.addEventListener("compositionstart", () => { composing = true; });
    input.addEventListener("compositionend", () => { composing = false; });
    input.addEventListener("keydown", (event) => {
      if (event.isComposing || event.keyCode === 229 || composing) return;
      if (event.key === "Escape") {
        event.preventDefault();
        event.stopPropagation(); // not the page's Esc (stop a reply)
        close();
      } else if (event.key === "Enter" && !event.shiftKey && !event.altKey && !event.ctrlKey && !event.metaKey) {
        event.preventDefault();
        save();
      }
    });
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      save();
    });
    form.querySelector("[data-edit-cancel]").addEventListener("click", close);
    input.focus();
    input.setSelectionRange(input.value.length, input.value.length);
  }
}

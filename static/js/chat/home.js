// The home page is the composer: its first send (or first file) creates the conversation
// (POST /c/ asking for JSON), and the page goes on as that conversation's page without a
// page load: the URL becomes /c/<uuid>/, the header and the list are the server's markup for
// it, and the socket opens. The Model select's choice goes with the creation.
import { gettext } from "./i18n.js";

export class Home {
  constructor({ root, onCreated }) {
    this.root = root;
    this.onCreated = onCreated; // (created) => void: the page takes the conversation on
    this.creating = null; // the promise of the creation under way (or done)
    // Back from the new conversation's URL to "/": show the home page that URL is.
    window.addEventListener("popstate", () => location.reload());
  }

  // The conversation, created once however many sends and files ask for it.
  ensure() {
    if (!this.creating) {
      this.creating = this.create().catch((error) => {
        this.creating = null; // a failure may be retried
        throw error;
      });
    }
    return this.creating;
  }

  async create() {
    const data = new FormData();
    data.append("csrfmiddlewaretoken", document.querySelector("#composer input[name=csrfmiddlewaretoken]").value);
    const model = document.getElementById("model-select");
    if (model) data.append("model", model.value);
    let response;
    try {
      response = await fetch(this.root.dataset.createUrl, {
        method: "POST", body: data, credentials: "same-origin", headers: { Accept: "application/json" },
      });
    } catch {
      throw new Error(gettext("Not connected. Try again in a moment."));
    }
    if (response.redirected) {
      location.reload(); // signed out: the page says so
      throw new Error(gettext("Signed out"));
    }
    const body = await response.json().catch(() => ({}));
    if (response.status !== 201) {
      throw new Error(body.error?.message || gettext("The conversation could not be created."));
    }
    const { dataset } = this.root;
    dataset.conversationId = body.id;
    dataset.messagesUrl = body.messages_url;
    dataset.renameUrl = body.rename_url;
    dataset.attachmentsUrl = body.attachments_url;
    delete dataset.createUrl;
    history.pushState({ conversation: body.id }, "", body.url);
    // Forms that come back to "this page" (the language switch) come back to it now.
    document.querySelectorAll('input[name="next"]').forEach((input) => { input.value = body.url; });
    document.title = `${body.title} · ${document.title.split(" · ").pop()}`;
    // The server's header (title, Model select, menu) and list for the new conversation.
    const header = document.getElementById("chat-header");
    const template = document.createElement("template");
    template.innerHTML = body.header_html.trim();
    header.replaceWith(template.content);
    const list = document.getElementById("conversation-list");
    if (list) list.innerHTML = body.list_html;
    this.onCreated(body);
    return body.attachments_url;
  }
}

// The conversation menu (a <details> disclosure in the header; without the script its links
// open the Settings and Delete pages and its Pin/Archive forms post): closed by Escape and by
// a click elsewhere; Settings and Delete open dialogs; Pin and Archive answer in place.
import { gettext } from "./i18n.js";
import { announce, hideNotice, showNotice } from "./notice.js";

async function postForm(form) {
  const response = await fetch(form.action, {
    method: "POST", body: new FormData(form), credentials: "same-origin", headers: { Accept: "application/json" },
  });
  const body = await response.json().catch(() => ({}));
  return { response, body };
}

function bindDialogs() {
  // Cancel buttons inside dialogs; a dialog's form errors come back from the server.
  document.addEventListener("click", (event) => {
    const close = event.target.closest("[data-dialog-close]");
    if (close) close.closest("dialog")?.close();
  });
  const settings = document.getElementById("settings-dialog");
  if (!settings) return;
  settings.addEventListener("submit", async (event) => {
    const form = event.target.closest("#settings-form");
    if (!form) return;
    event.preventDefault();
    try {
      const { response, body } = await postForm(form);
      if (response.status === 400 && body.form_html) {
        // Refused: the form again with its errors (nothing was stored), focus on the first.
        const template = document.createElement("template");
        template.innerHTML = body.form_html.trim();
        form.replaceWith(template.content);
        settings.querySelector(".field--error :is(input, select, textarea)")?.focus();
        return;
      }
      if (!response.ok) throw new Error(String(response.status));
      const select = document.getElementById("model-select");
      if (select && body.model && [...select.options].some((option) => option.value === body.model)) select.value = body.model;
      settings.close();
      hideNotice();
    } catch {
      showNotice(gettext("Not connected. Try again in a moment."));
    }
  });
}

export function bindMenu({ onListChanged } = {}) {
  const menu = document.getElementById("conversation-menu");
  if (!menu) return;
  const summary = menu.querySelector("summary");
  document.addEventListener("click", (event) => {
    if (menu.open && !menu.contains(event.target)) menu.open = false;
  });
  menu.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && menu.open) {
      // Closes the menu only (Escape elsewhere stops a reply being written).
      event.preventDefault();
      event.stopPropagation();
      menu.open = false;
      summary.focus();
    }
  });
  menu.addEventListener("click", (event) => {
    const link = event.target.closest("[data-dialog]");
    if (link) {
      const dialog = document.getElementById(link.dataset.dialog);
      if (!dialog) return; // the page has no dialog (just created from home): the link's page
      event.preventDefault();
      menu.open = false;
      dialog.showModal();
      return;
    }
    // Rename and the exports (downloads: the page stays) fold the menu as they act.
    if (event.target.closest("#rename-button, a.menu__item")) menu.open = false;
  });
  menu.addEventListener("submit", async (event) => {
    const form = event.target.closest("form[data-mark]");
    if (!form) return;
    event.preventDefault();
    try {
      const { response, body } = await postForm(form);
      if (!response.ok) throw new Error(String(response.status));
      // The header's menu says what the next press does; the list is the server's.
      const [field] = form.querySelectorAll("input[type=hidden]:not([name=csrfmiddlewaretoken])");
      const on = field.name === "pinned" ? body.pinned : body.archived;
      field.value = on ? "0" : "1";
      const labels = field.name === "pinned"
        ? [gettext("Pin"), gettext("Unpin")]
        : [gettext("Archive"), gettext("Unarchive")];
      form.querySelector("button").textContent = on ? labels[1] : labels[0];
      if (field.name === "archived") {
        // The other form too: archiving unpins.
        const pin = menu.querySelector("input[name=pinned]");
        if (pin && on) {
          pin.value = "1";
          pin.form.querySelector("button").textContent = gettext("Pin");
        }
      }
      menu.open = false;
      summary.focus();
      onListChanged?.(body.list_html);
      const pinnedText = on ? gettext("Pinned: it stays on top of the list.") : gettext("Unpinned.");
      const archivedText = on ? gettext("Archived: find it under Archived, or by searching.") : gettext("Back in the list.");
      announce(field.name === "pinned" ? pinnedText : archivedText);
    } catch {
      showNotice(gettext("Not connected. Try again in a moment."));
    }
  });
}

export { bindDialogs };

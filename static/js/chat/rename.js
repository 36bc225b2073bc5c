// Renaming the conversation in place (the form also works without the script), and a new
// title shown wherever the page has it: the heading, the tab, the conversation list.
import { gettext } from "./i18n.js";
import { hideNotice, showNotice } from "./notice.js";

export function showTitle(conversationId, text) {
  const title = document.getElementById("chat-title");
  if (title) title.textContent = text;
  document.title = `${text} · ${document.title.split(" · ").pop()}`;
  const link = document.querySelector(`#conversation-list a[data-conversation-id="${CSS.escape(conversationId)}"]`);
  if (link) link.textContent = text;
}

export function bindRename(conversationId, renameUrl) {
  const title = document.getElementById("chat-title");
  const form = document.getElementById("rename-form");
  const input = document.getElementById("rename-input");
  const button = document.getElementById("rename-button");
  const error = document.getElementById("rename-error");
  const open = (show) => {
    form.hidden = !show;
    title.hidden = show;
    error.textContent = "";
    if (show) {
      input.value = title.textContent;
      input.select();
      input.focus();
    } else {
      // Rename is an item of the conversation menu, folded by now: back to the menu.
      (document.querySelector("#conversation-menu summary") || title).focus();
    }
  };
  button.addEventListener("click", () => open(true));
  document.getElementById("rename-cancel").addEventListener("click", () => open(false));
  input.addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      // Cancels the rename only: Escape on the page also stops a reply being written.
      event.preventDefault();
      event.stopPropagation();
      open(false);
    }
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const response = await fetch(renameUrl, {
        method: "POST",
        body: new FormData(form),
        credentials: "same-origin",
        headers: { Accept: "application/json" },
      });
      const data = await response.json();
      if (!response.ok) {
        // Said beside the box (an empty or too long title); nothing was stored.
        error.textContent = (data.errors || []).join(" ") || gettext("Could not rename.");
        input.focus();
        return;
      }
      hideNotice();
      showTitle(conversationId, data.title);
      open(false);
    } catch {
      showNotice(gettext("Not connected. Try again in a moment."));
    }
  });
}

// The Model select in the chat header: the conversation's model from its next turn. The
// server checks it against the person's API key; a refusal puts the select back.
import { gettext } from "./i18n.js";
import { hideNotice, showNotice } from "./notice.js";

export function bindModelPicker() {
  const form = document.getElementById("model-form");
  // On the home page the choice goes with the conversation's creation (home.js).
  if (!form || !form.getAttribute("action")) return;
  const select = form.querySelector("select");
  let chosen = select.value;
  select.addEventListener("change", async () => {
    try {
      const response = await fetch(form.action, {
        method: "POST",
        body: new FormData(form),
        credentials: "same-origin",
        headers: { Accept: "application/json" },
      });
      const data = await response.json();
      if (!response.ok) {
        select.value = chosen;
        showNotice(data.error?.message || gettext("The model could not be changed."));
        return;
      }
      chosen = data.model;
      hideNotice();
    } catch {
      select.value = chosen;
      showNotice(gettext("Not connected. Try again in a moment."));
    }
  });
}

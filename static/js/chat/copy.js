// Copy message: a message's Markdown source to the clipboard. A question's body is its
// source (shown as plain text); a reply's is kept in its <template class="message__source">
// (the body shows it rendered), filled by the server and, for a live reply, by `done`.
import { gettext } from "./i18n.js";
import { showNotice } from "./notice.js";

export function messageSource(article) {
  const source = article.querySelector("template.message__source");
  if (source) return source.content.textContent;
  return article.querySelector(".message__body").textContent;
}

export function setSource(article, text) {
  const source = article.querySelector("template.message__source");
  if (source) source.content.textContent = text;
}

async function write(text) {
  if (navigator.clipboard && window.isSecureContext) {
    await navigator.clipboard.writeText(text);
    return;
  }
  // Plain http to a host that is not localhost: the older way.
  const area = document.createElement("textarea");
  area.value = text;
  area.setAttribute("readonly", "");
  area.style.position = "fixed";
  area.style.opacity = "0";
  document.body.append(area);
  area.select();
  const copied = document.execCommand("copy");
  area.remove();
  if (!copied) throw new Error("copy refused");
}

export function bindCopy(log, announcer) {
  log.addEventListener("click", async (event) => {
    const button = event.target.closest("button[data-copy]");
    if (!button || !log.contains(button)) return;
    const article = button.closest("article");
    try {
      await write(messageSource(article));
      if (announcer) {
        announcer.textContent = "";
        requestAnimationFrame(() => { announcer.textContent = gettext("Message copied."); });
      }
      button.dataset.copied = "";
      setTimeout(() => delete button.dataset.copied, 1500);
    } catch {
      showNotice(gettext("The browser did not allow copying. Select the text and copy it instead."));
    }
  });
}

// What the script adds to rendered messages, stored or live: times in the reader's zone,
// and a Copy button on each code block of a reply. Safe to run twice on the same part.
import { gettext } from "./i18n.js";

const TIME_FORMAT = new Intl.DateTimeFormat(document.documentElement.lang || undefined, {
  dateStyle: "short",
  timeStyle: "short",
});

export function localiseTimes(scope) {
  // The server writes times in its own zone; show them in the reader's.
  scope.querySelectorAll("time[datetime]").forEach((el) => {
    const when = new Date(el.dateTime);
    if (!Number.isNaN(when.getTime())) el.textContent = TIME_FORMAT.format(when);
  });
}

export function decorate(scope) {
  localiseTimes(scope);
  scope.querySelectorAll('article[data-role="assistant"] pre').forEach(addCopyButton);
}

// The code blocks of a reply's rendering (also a fragment about to be shown: chat/live.js).
export function addCopyButtons(scope) {
  scope.querySelectorAll("pre").forEach(addCopyButton);
}

function addCopyButton(pre) {
  if (pre.parentElement?.classList.contains("code")) return; // already has its button
  const wrap = document.createElement("div");
  wrap.className = "code";
  const button = document.createElement("button");
  button.type = "button";
  button.className = "code__copy";
  button.textContent = gettext("Copy");
  button.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(pre.innerText);
      button.textContent = gettext("Copied");
    } catch {
      button.textContent = gettext("Copy failed");
    }
    setTimeout(() => { button.textContent = gettext("Copy"); }, 1500);
  });
  pre.replaceWith(wrap);
  wrap.append(button, pre);
}

// Every signed-in page: the conversation list ("Load more"), its folding, and the keyboard
// shortcuts (listed in the Shortcuts dialog, includes/shortcuts.html).

function mergeGroups(list, fragment) {
  // A page may continue the last day group of the previous one: append to it.
  const sections = fragment.querySelectorAll("section.sidebar__group");
  for (const section of sections) {
    const existing = list.querySelectorAll("section.sidebar__group");
    const last = existing[existing.length - 1];
    if (last && last.dataset.label === section.dataset.label) {
      last.querySelector("ul").append(...section.querySelectorAll("li"));
      section.remove();
    }
  }
  list.append(fragment);
}

function bindLoadMore(list) {
  list.addEventListener("click", async (event) => {
    const link = event.target.closest("[data-load-more]");
    if (!link) return;
    event.preventDefault();
    link.setAttribute("aria-busy", "true");
    try {
      const response = await fetch(link.href, { credentials: "same-origin" });
      if (!response.ok) throw new Error(String(response.status));
      const template = document.createElement("template");
      template.innerHTML = await response.text();
      link.remove();
      mergeGroups(list, template.content);
    } catch {
      link.removeAttribute("aria-busy");
    }
  });
}

function bindShortcuts() {
  document.addEventListener("keydown", (event) => {
    const mod = event.ctrlKey || event.metaKey;
    const key = event.key.toLowerCase();
    if (mod && event.shiftKey && key === "o") {
      // New chat, as in other chat apps.
      event.preventDefault();
      document.getElementById("new-chat-form")?.requestSubmit();
    } else if (mod && !event.shiftKey && key === "k") {
      event.preventDefault();
      revealSidebar();
      document.getElementById("search-input")?.focus();
    } else if (mod && event.shiftKey && key === "s") {
      event.preventDefault();
      document.getElementById("sidebar-toggle")?.click();
    } else if (mod && !event.shiftKey && key === "/") {
      event.preventDefault();
      openShortcuts();
    } else if (event.shiftKey && !mod && event.key === "Escape") {
      const box = document.getElementById("composer-input");
      if (box) {
        event.preventDefault();
        box.focus();
      }
    }
  });
  const button = document.getElementById("shortcuts-button");
  if (button) {
    button.hidden = false;
    button.addEventListener("click", openShortcuts);
  }
}

function openShortcuts() {
  const dialog = document.getElementById("shortcuts-dialog");
  if (dialog && !dialog.open) dialog.showModal();
}

// Phones fold the list by default (the chat gets the screen); desktops show it unless the
// person folded it to a narrow rail, which is remembered.
const PHONE = matchMedia("(max-width: 760px)");
const FOLDED_KEY = "sidebar:folded";

function bindSidebarToggle() {
  // Without this script everything stays visible.
  const sidebar = document.getElementById("sidebar");
  const toggle = document.getElementById("sidebar-toggle");
  if (!sidebar || !toggle) return;
  sidebar.dataset.collapsible = "";
  const show = (open) => {
    toggle.setAttribute("aria-expanded", String(open));
    sidebar.toggleAttribute("data-open", open);
  };
  const initial = () => show(!PHONE.matches && localStorage.getItem(FOLDED_KEY) !== "1");
  initial();
  PHONE.addEventListener("change", initial);
  toggle.hidden = false;
  toggle.addEventListener("click", () => {
    const open = toggle.getAttribute("aria-expanded") !== "true";
    show(open);
    if (!PHONE.matches) {
      if (open) localStorage.removeItem(FOLDED_KEY);
      else localStorage.setItem(FOLDED_KEY, "1");
    }
  });
}

function revealSidebar() {
  // Ctrl+K with the list folded: unfold it first, or the search box cannot take the focus.
  const toggle = document.getElementById("sidebar-toggle");
  if (toggle && !toggle.hidden && toggle.getAttribute("aria-expanded") !== "true") toggle.click();
}

function bindNewChat() {
  // New chat is the home page, the composer (a GET form, so it works without the script);
  // its URL without the form's empty "?".
  const form = document.getElementById("new-chat-form");
  form?.addEventListener("submit", (event) => {
    event.preventDefault();
    location.assign(form.action);
  });
}

const list = document.getElementById("conversation-list");
if (list) bindLoadMore(list);
bindSidebarToggle();
bindShortcuts();
bindNewChat();

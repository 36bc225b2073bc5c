// Every signed-in page: the conversation list ("Load more") and global keyboard shortcuts.

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
    if (mod && event.shiftKey && (event.key === "O" || event.key === "o")) {
      // New chat, as in other chat apps.
      event.preventDefault();
      document.getElementById("new-chat-form")?.requestSubmit();
    } else if (mod && !event.shiftKey && (event.key === "k" || event.key === "K")) {
      event.preventDefault();
      revealSidebar();
      document.getElementById("search-input")?.focus();
    }
  });
}

function bindSidebarToggle() {
  // On a phone the list, search and account links fold behind one button; without this
  // script (or on a wide screen, where CSS hides the button) everything stays visible.
  const sidebar = document.getElementById("sidebar");
  const toggle = document.getElementById("sidebar-toggle");
  if (!sidebar || !toggle) return;
  sidebar.dataset.collapsible = "";
  toggle.setAttribute("aria-expanded", String(sidebar.hasAttribute("data-open")));
  toggle.hidden = false;
  toggle.addEventListener("click", () => {
    const open = toggle.getAttribute("aria-expanded") !== "true";
    toggle.setAttribute("aria-expanded", String(open));
    sidebar.toggleAttribute("data-open", open);
  });
}

function revealSidebar() {
  // Ctrl+K on a phone: unfold the panel first, or the search box cannot take the focus.
  const toggle = document.getElementById("sidebar-toggle");
  if (toggle && !toggle.hidden && toggle.getAttribute("aria-expanded") !== "true" && getComputedStyle(toggle).display !== "none") {
    toggle.click();
  }
}

const list = document.getElementById("conversation-list");
if (list) bindLoadMore(list);
bindSidebarToggle();
bindShortcuts();

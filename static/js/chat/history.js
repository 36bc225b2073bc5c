// The shown thread a page at a time (docs/protocol.md, "The message fragment"). The page
// opens with the newest messages, or with the ones around a search hit; the server marks
// where more can be loaded (templates/conversations/_history.html: above the first message,
// below the last) and this module loads them as they come near the view, keeping what the
// person reads where it was.
//
// While the end of the thread is not shown (opened at a search hit, scrolled up from
// there), live frames about it have nowhere to go: the page is "detached". Writing jumps to
// the end (the composer takes focus: the newest page, and the socket's `state`); scrolling
// down to it attaches the page again the same way.
import { decorate } from "./decorate.js";
import { gettext } from "./i18n.js";
import { showNotice } from "./notice.js";

// Start loading this far before a marker scrolls into view, so reading rarely waits.
const AHEAD_PX = 800;
const FINAL = new Set(["complete", "stopped", "error", "interrupted"]);

export class History {
  constructor({ log, messagesUrl, composerInput, onJump, onAttached }) {
    this.log = log;
    this.url = messagesUrl;
    this.onJump = onJump; // show the end of the thread: the newest page and the live reply
    this.onAttached = onAttached; // scrolled down to the end: the live reply, if any
    this.observer = new IntersectionObserver((entries) => {
      for (const entry of entries) if (entry.isIntersecting) this.load(entry.target);
    }, { root: log, rootMargin: `${AHEAD_PX}px 0px` });
    log.addEventListener("click", (event) => {
      const button = event.target.closest(".history__more");
      if (button) this.load(button.closest("[data-history]"));
    });
    composerInput?.addEventListener("focus", () => {
      if (this.detached()) this.onJump();
    });
    this.watch();
  }

  // The end of the thread is not on the page.
  detached() {
    return Boolean(this.log.querySelector('[data-history="after"]'));
  }

  // Where a reconnecting page resyncs from (connection.js): the last message it shows in
  // its final form, whose followers it asks for (`since`); null for the newest page; false
  // when detached (nothing of the end is shown, so nothing to fetch).
  since() {
    if (this.detached()) return false;
    const articles = [...this.log.querySelectorAll("article[data-message-id]")];
    const known = articles.reverse().find((article) => FINAL.has(article.dataset.status));
    return known ? known.dataset.messageId : null;
  }

  // What `since` answered (X-Thread-Part: since): the messages after `known`, in place of
  // whatever the page shows after it (a reply it saw being written, a send not yet stored).
  showTail(known, html) {
    const article = this.log.querySelector(`article[data-message-id="${CSS.escape(known)}"]`);
    if (!article) return false;
    let after = false;
    for (const element of this.log.querySelectorAll("article, [data-history]")) {
      if (after && element.dataset.history !== "before") element.remove();
      if (element === article) after = true;
    }
    const template = document.createElement("template");
    template.innerHTML = html;
    decorate(template.content);
    article.after(template.content);
    this.watch();
    return true;
  }

  // Markers added or replaced (a new page, a resync): watch them, and the page opened at a
  // message (`#m-<id>`) shows that message.
  watch() {
    this.observer.disconnect();
    this.log.querySelectorAll("[data-history]").forEach((marker) => this.observer.observe(marker));
  }

  showTarget() {
    const id = location.hash.startsWith("#m-") ? location.hash.slice(1) : "";
    const target = id && document.getElementById(id);
    if (!target || !this.log.contains(target)) return;
    target.classList.add("message--target");
    target.scrollIntoView({ block: "center" });
    // The browser's own jump to the #fragment comes later and puts it at the very top.
    if (document.readyState !== "complete") {
      window.addEventListener("load", () => target.scrollIntoView({ block: "center" }), { once: true });
    }
  }

  async load(marker) {
    if (!marker || marker.dataset.loading || !this.log.contains(marker)) return;
    marker.dataset.loading = "1";
    marker.setAttribute("aria-busy", "true");
    const direction = marker.dataset.history;
    let html;
    try {
      const query = `${direction}=${encodeURIComponent(marker.dataset.cursor)}`;
      const response = await fetch(`${this.url}?${query}`, { credentials: "same-origin" });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      html = await response.text();
    } catch {
      delete marker.dataset.loading;
      marker.removeAttribute("aria-busy");
      showNotice(direction === "before" ? gettext("Could not load earlier messages.") : gettext("Could not load later messages."));
      return;
    }
    // Replaced meanwhile (a resync, another thread shown): this page is not wanted any more.
    if (!this.log.contains(marker)) return;
    const template = document.createElement("template");
    template.innerHTML = html;
    decorate(template.content);
    if (direction === "before") {
      // What the person reads stays where it is: the first message below the new ones
      // keeps its place on the screen (whatever the browser's own scroll anchoring did).
      const anchor = marker.nextElementSibling;
      const top = anchor ? anchor.getBoundingClientRect().top : 0;
      marker.replaceWith(template.content);
      if (anchor) this.log.scrollTop += anchor.getBoundingClientRect().top - top;
    } else {
      marker.replaceWith(template.content);
    }
    this.watch();
    // Scrolled down to the end of the thread: live again (the reply being written, if any).
    if (direction === "after" && !this.detached()) this.onAttached();
  }
}

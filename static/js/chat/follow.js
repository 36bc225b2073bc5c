// "Jump to newest": the list follows a reply being written only while the person is at the
// bottom (messages.js, isNearBottom); scrolled up to read, they get this button instead, and
// it says when something new arrived below.
export function bindJumpToNewest(messages) {
  const button = document.getElementById("jump-to-newest");
  if (!button) return { refresh() {} };
  const log = messages.log;
  let frame = 0;
  const refresh = () => {
    frame = 0;
    const away = !messages.isNearBottom();
    button.hidden = !away;
    if (!away) button.removeAttribute("data-new");
  };
  const soon = () => {
    if (!frame) frame = requestAnimationFrame(refresh);
  };
  log.addEventListener("scroll", soon, { passive: true });
  // Content that grows below a reader (a reply being written) marks the button.
  new MutationObserver(() => {
    if (!messages.isNearBottom()) button.dataset.new = "";
    soon();
  }).observe(log, { childList: true, subtree: true, characterData: true });
  button.addEventListener("click", () => {
    messages.scrollToBottom(true);
    button.hidden = true;
    button.removeAttribute("data-new");
    document.getElementById("composer-input")?.focus({ preventScroll: true });
  });
  return { refresh };
}

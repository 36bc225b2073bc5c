// The page's one alert line (#notice): refusals, connection trouble, rename errors.

export function showNotice(text) {
  const notice = document.getElementById("notice");
  notice.textContent = text;
  notice.hidden = false;
}

export function hideNotice() {
  const notice = document.getElementById("notice");
  notice.hidden = true;
  notice.textContent = "";
}

// A short confirmation for screen readers (#announcer, role=status): what a button did
// where the page shows it only by changing (a pin, an archive, a copy).
export function announce(text) {
  const announcer = document.getElementById("announcer");
  if (!announcer) return;
  announcer.textContent = "";
  requestAnimationFrame(() => { announcer.textContent = text; });
}

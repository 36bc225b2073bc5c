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

// Django's admin autocomplete widget (select2) renders a combobox whose accessible name
// points at an element that is empty until something is chosen: name it after the field's
// <label>, as the plain <select> it replaces was named. Select2 builds its widget after
// this script runs (on jQuery's ready), so watch for it.
function nameAutocompleteWidgets() {
  document.querySelectorAll("select.admin-autocomplete").forEach((select) => {
    const label = document.querySelector(`label[for="${CSS.escape(select.id)}"]`);
    const widget = select.nextElementSibling;
    if (!label || !widget || !widget.classList.contains("select2")) return;
    const name = label.textContent.replace(/[:：]\s*$/, "").trim();
    widget.querySelectorAll('[role="combobox"], [role="textbox"]').forEach((element) => {
      if (element.getAttribute("aria-label") !== name) element.setAttribute("aria-label", name);
    });
  });
}

document.addEventListener("DOMContentLoaded", () => {
  nameAutocompleteWidgets();
  new MutationObserver(nameAutocompleteWidgets).observe(document.body, { childList: true, subtree: true });
});

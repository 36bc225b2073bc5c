// What the model was sent (issue 19, docs/protocol.md `done.context`): after each reply,
// the gauge in the header shows how full the model's window was, the marker moves to
// where its memory begins, and the reply's details say what it was answered without.
// The markup is the server's (_context_gauge.html, _context_marker.html, _context_note.html);
// this module only fills it in.
import { gettext, interpolate, ngettext } from "./i18n.js";

export class ContextView {
  constructor(log) {
    this.log = log;
  }

  apply(frame) {
    if (frame.type !== "done" || !frame.context) return;
    // Looked up each time: the home page's first send swaps in a new header (home.js).
    this.gauge = document.getElementById("context-gauge");
    this.meter = document.getElementById("context-meter");
    this.value = document.getElementById("context-value");
    this.markerTemplate = document.getElementById("context-marker-template");
    this.showGauge(frame.context);
    this.moveMarker(frame.context);
    this.noteReply(frame.message_id, frame.context);
  }

  showGauge({ window: size, prompt_tokens: used }) {
    if (!this.gauge || !size || used == null) return;
    this.meter.max = size;
    this.meter.high = Math.round(size * 0.8);
    this.meter.value = used;
    this.value.textContent = `${Math.min(100, Math.round((100 * used) / size))}%`;
    this.gauge.title = interpolate(
      gettext("%s of %s tokens of the model's context window on the last turn"),
      [used, size],
    );
    this.gauge.hidden = false;
  }

  moveMarker({ first_id: firstId, summarised }) {
    const old = document.getElementById("context-marker");
    if (old) old.remove();
    const first = firstId ? document.getElementById(`m-${firstId}`) : null;
    if (!first || !this.markerTemplate) return;
    const marker = this.markerTemplate.content.firstElementChild.cloneNode(true);
    for (const text of marker.querySelectorAll("[data-when]")) {
      text.hidden = (text.dataset.when === "summarised") !== Boolean(summarised);
    }
    first.before(marker);
  }

  noteReply(messageId, { omitted, summarised }) {
    const article = document.getElementById(`m-${messageId}`);
    const note = article ? article.querySelector("[data-context-note]") : null;
    if (!note) return;
    note.hidden = !omitted;
    if (!omitted) return;
    const format = summarised
      ? ngettext(
          "Answered without the %s earliest message, from a summary of it.",
          "Answered without the %s earliest messages, from a summary of them.",
          omitted,
        )
      : ngettext(
          "Answered without the %s earliest message, which no longer fits the model.",
          "Answered without the %s earliest messages, which no longer fit the model.",
          omitted,
        );
    note.textContent = interpolate(format, [omitted]);
  }
}

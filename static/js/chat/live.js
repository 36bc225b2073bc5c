// A reply rendered as Markdown while it is written. The server's HTML (the `done` frame)
// replaces it at the end; until then the page shows what the same parser and the same
// allow-list make of the text so far (chat/markdown.js).
//
// Cost per frame is bounded by rendering only the tail: top-level blocks that the text
// after them can no longer change are rendered once and kept (`kept`); each frame
// parses and renders only what follows them. A code block still open at the end grows by
// its new text only (`fence`). Rendering waits for an animation frame (at most one per
// frame), and a render that took long spaces out the next ones, so a huge last block (a
// paragraph with no end) cannot take over the page.
import { addCopyButtons } from "./decorate.js";
import { mayCloseFence, openFence, settle } from "./unfinished.js";

// Text appended to an open code block goes into text nodes of about this size.
const TEXT_NODE_CHARS = 2048;

// A fence that opens a line, the whole line: `code` is what follows it.
const FENCE_LINE = /^(`{3,}|~{3,})[^\n]*\n/;

// Rendering may take at most this share of the page's time while a reply streams.
const BUSY_SHARE = 0.25;

// Where line `index` of `text` starts (any line break: \n, \r\n or \r, as markdown-it).
function lineOffset(text, index) {
  if (index === 0) return 0;
  const breaks = /\r\n?|\n/g;
  let seen = 0;
  let match;
  while ((match = breaks.exec(text)) !== null) {
    seen += 1;
    if (seen === index) return match.index + match[0].length;
  }
  return text.length;
}

export class LiveReply {
  // `around(render)` runs each render (the message list keeps a followed reply in view).
  constructor(body, markdown, around = (render) => render()) {
    this.body = body;
    this.markdown = markdown;
    this.around = around;
    this.frame = 0;
    this.notBefore = 0;
    this.set("");
  }

  // The whole text so far (a reconnect, a resync): rendered from scratch.
  set(text) {
    // The text is kept in pieces so that no frame copies all of it: `kept`, the blocks
    // rendered for good; `pending`, the rest; `fresh`, what arrived since the last render.
    this.kept = "";
    this.pending = text;
    this.fresh = text;
    this.length = text.length;
    this.references = {}; // link reference definitions of the kept blocks
    this.tail = []; // the nodes of `pending`, replaced at each render
    this.fence = null; // the open code block at the end, while only its text grows
    this.renderedLength = -1;
    this.body.replaceChildren();
    if (this.markdown) this.body.classList.remove("message__body--plain");
    this.schedule();
  }

  get text() {
    return this.kept + this.pending;
  }

  append(text) {
    this.pending += text;
    this.fresh += text;
    this.length += text.length;
    this.schedule();
  }

  // No more renders (the server's HTML takes over, or the reply is gone).
  stop() {
    if (this.frame) cancelAnimationFrame(this.frame);
    this.frame = 0;
    this.stopped = true;
  }

  schedule() {
    if (this.frame || this.stopped) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      if (performance.now() < this.notBefore) {
        this.schedule();
        return;
      }
      this.around(() => this.flush());
    });
  }

  // Render now, if anything changed (the animation frame calls it; so can a benchmark).
  flush() {
    if (this.renderedLength === this.length) return;
    const started = performance.now();
    if (this.markdown) this.render();
    else this.body.textContent = this.text;
    this.fresh = "";
    this.renderedLength = this.length;
    const cost = performance.now() - started;
    this.notBefore = started + cost / BUSY_SHARE;
  }

  render() {
    if (this.fence && this.extendFence()) return;
    this.fence = null;
    let tail = this.pending;
    let starts = this.blockStarts(tail);
    // Blocks are kept once a later block has begun and two whole lines of it are here: a
    // partial line can still turn out to continue the block above (a `#` that becomes
    // `#tag`), and a table's header only becomes one with the line after it.
    const complete = (tail.match(/\r\n?|\n/g) || []).length;
    const keep = starts.filter((line) => line > 0 && line + 2 <= complete).pop();
    if (keep) {
      const cut = lineOffset(tail, keep);
      const env = { references: { ...this.references } };
      const kept = this.markdown.render(tail.slice(0, cut), env);
      this.references = env.references;
      this.kept += tail.slice(0, cut);
      this.replaceTail(kept);
      this.tail = [];
      tail = tail.slice(cut);
      this.pending = tail;
      starts = starts.filter((line) => line >= keep).map((line) => line - keep);
    }
    // The last block as it will probably end (no half-typed syntax shown); what precedes
    // it in the tail is whole already.
    const at = lineOffset(tail, starts.length ? starts[starts.length - 1] : 0);
    const last = settle(tail.slice(at).replace(/\r\n?/g, "\n"));
    this.replaceTail(this.markdown.render(tail.slice(0, at) + last, { references: { ...this.references } }));
    if (!/[\r\0]/.test(tail)) this.followFence(last, tail.length - at - last.length);
  }

  // If the last block is a code block left open, from its first line on, keep its <code>:
  // until it closes, the next renders only append text to it. Taken only if that element
  // holds exactly the block's text, so the shortcut shows what a full render would.
  // `waiting` is how much of the block's end is held back (a line that may close it).
  followFence(block, waiting) {
    const opening = FENCE_LINE.exec(block);
    if (!opening || openFence(block.split("\n")) === null) return;
    const element = this.tail.findLast((node) => node.nodeType === Node.ELEMENT_NODE);
    const code = element?.querySelector("pre > code");
    const text = block.slice(opening[0].length);
    if (!code || code.textContent !== text) return;
    this.fence = {
      code,
      char: opening[1][0],
      length: opening[1].length,
      waiting: waiting > 0 ? this.pending.slice(-waiting) : "",
      atLineStart: text === "" || text.endsWith("\n"),
    };
  }

  // Append the text that arrived to the open code block; false if a full render is
  // needed instead (the block closed, or the text has what markdown-it would change).
  extendFence() {
    const fence = this.fence;
    const added = fence.waiting + this.fresh;
    if (/[\r\0]/.test(added)) return false;
    const lines = added.split("\n");
    const closing = new RegExp(`^ {0,3}\\${fence.char}{${fence.length},}[ \\t]*$`);
    for (let i = 0; i < lines.length - 1; i += 1) {
      if ((i > 0 || fence.atLineStart) && closing.test(lines[i])) return false;
    }
    // A line shown in part has something other than the fence character: never a closer.
    const last = lines[lines.length - 1];
    const wait = (lines.length > 1 || fence.atLineStart) && mayCloseFence(last, fence.char);
    const show = wait ? added.slice(0, added.length - last.length) : added;
    fence.waiting = wait ? last : "";
    if (show) {
      // Into the last text node while it is short: few nodes to lay out, little to copy.
      const node = fence.code.lastChild;
      if (node && node.nodeType === Node.TEXT_NODE && node.length < TEXT_NODE_CHARS) node.appendData(show);
      else fence.code.append(show);
      fence.atLineStart = show.endsWith("\n");
    }
    return true;
  }

  // The first line of each top-level block of `text`.
  blockStarts(text) {
    const starts = [];
    for (const token of this.markdown.parse(text, { references: { ...this.references } })) {
      if (token.level === 0 && token.nesting >= 0 && token.map && token.map[0] !== starts[starts.length - 1]) {
        starts.push(token.map[0]);
      }
    }
    return starts;
  }

  replaceTail(fragment) {
    addCopyButtons(fragment);
    const nodes = [...fragment.childNodes];
    for (const node of this.tail) node.remove();
    this.body.append(fragment);
    this.tail = nodes;
  }
}

// The last block of a reply still being written, as the model will probably finish it, so
// the page never shows Markdown syntax that the next tokens turn into formatting: a `**`
// before its closing pair, a fence of two backticks, a lone `-` that would make the line
// above a heading for a moment, the brackets of a link whose address is on its way.
// Looks only: it changes what is shown while streaming, never what is stored, and the
// server's HTML of the whole reply replaces it at the end. Safety does not rest on it:
// whatever it returns goes through the same parser and sanitiser as the rest.

// A line that is nothing yet but the start of a marker (fence, bullet, heading, table row,
// quote, list number): held back until more of it arrives.
const MARKER_ONLY = /^[ \t]*(?:[-*+_=`~#|:>.]|\d)+[ \t]*$/;
const FENCE_OPEN = /^ {0,3}(`{3,}|~{3,})/;

// The fence marker a block (its lines) opens with and leaves open, or null.
export function openFence(lines) {
  const opening = FENCE_OPEN.exec(lines[0]);
  if (!opening) return null;
  const marker = opening[1];
  if (marker[0] === "`" && lines[0].slice(opening[0].length).includes("`")) return null;
  const closing = new RegExp(`^ {0,3}\\${marker[0]}{${marker.length},}[ \\t]*$`);
  // The last line may be incomplete: only whole lines can have closed it.
  for (let i = 1; i < lines.length - 1; i += 1) if (closing.test(lines[i])) return null;
  return marker;
}

// Each step keeps `masked` as long as `text`, with code spans blanked out: delimiters and
// brackets inside code are not syntax.
function settleCode(line) {
  let masked = "";
  let i = 0;
  while (i < line.length) {
    if (line[i] === "\\" && i + 1 < line.length) {
      masked += "  "; // an escaped character is text, not syntax
      i += 2;
      continue;
    }
    if (line[i] !== "`") {
      masked += line[i];
      i += 1;
      continue;
    }
    let run = 1;
    while (line[i + run] === "`") run += 1;
    const close = findRun(line, "`", run, i + run);
    if (close < 0) {
      if (!line.slice(i + run).trim()) {
        // An opening with nothing after it yet: not shown until its code arrives.
        const text = line.slice(0, i).replace(/[ \t]+$/, "");
        return { text, masked: masked.slice(0, text.length) };
      }
      const text = line + "`".repeat(run);
      return { text, masked: masked.padEnd(text.length, " ") };
    }
    masked += " ".repeat(close + run - i);
    i = close + run;
  }
  return { text: line, masked };
}

// Where a run of exactly `length` `char`s starts, from `from` on; -1 if none.
function findRun(text, char, length, from) {
  let i = from;
  while (i < text.length) {
    if (text[i] !== char) {
      i += 1;
      continue;
    }
    let run = 1;
    while (text[i + run] === char) run += 1;
    if (run === length) return i;
    i += run;
  }
  return -1;
}

// A link or image whose address has not arrived (or not even its `](`) shows its text.
function settleLinks({ text, masked }) {
  for (const pattern of [/!?\[([^[\]]*)\]\([^()\s]*$/, /!?\[([^[\]]*)\]?$/]) {
    const match = pattern.exec(masked);
    if (!match) continue;
    const inner = match.index + match[0].indexOf("[") + 1;
    const end = inner + match[1].length;
    return {
      text: text.slice(0, match.index) + text.slice(inner, end),
      masked: masked.slice(0, match.index) + masked.slice(inner, end),
    };
  }
  return { text, masked };
}

// Emphasis and strikethrough opened and not closed: closed, innermost first. One with
// nothing after it yet is dropped instead (a closer needs text before it).
function settleDelimiters({ text, masked }) {
  const open = []; // {marker, at}
  // A bullet at the start of the line is a list marker, not emphasis.
  const runs = /\*+|~~+/g;
  runs.lastIndex = /^[ \t]*(?:[*+-][ \t]+)*/.exec(masked)[0].length;
  let match;
  while ((match = runs.exec(masked)) !== null) {
    const run = match[0];
    const before = masked[match.index - 1];
    const after = masked[match.index + run.length];
    const closes = before !== undefined && before.trim() !== "";
    const opens = after === undefined || after.trim() !== "";
    const units = run[0] === "~" ? ["~~"] : [...(run.length % 2 ? ["*"] : []), ...Array(run.length >> 1).fill("**")];
    for (const marker of units) {
      const top = open[open.length - 1];
      if (top && top.marker === marker && closes) open.pop();
      else if (opens) open.push({ marker, at: match.index });
    }
  }
  let settled = text;
  while (open.length && !/[^*~\s]/.test(masked.slice(open[open.length - 1].at, settled.length))) {
    settled = settled.slice(0, open.pop().at);
  }
  if (!open.length) return settled;
  settled = settled.replace(/[ \t]+$/, "");
  for (let i = open.length - 1; i >= 0; i -= 1) settled += open[i].marker;
  return settled;
}

// A last line of an open fence that may still become its closing line: it waits.
export function mayCloseFence(line, char) {
  return line !== "" && new RegExp(`^[ \\t]*\\${char}*[ \\t]*$`).test(line);
}

export function settle(block) {
  const lines = block.split("\n");
  const last = lines[lines.length - 1];
  const fence = openFence(lines);
  if (fence !== null) {
    // Inside code everything is literal, but its closing fence may be arriving.
    if (mayCloseFence(last, fence[0])) lines[lines.length - 1] = "";
    return lines.join("\n");
  }
  if (MARKER_ONLY.test(last)) {
    lines[lines.length - 1] = "";
    return lines.join("\n");
  }
  lines[lines.length - 1] = settleDelimiters(settleLinks(settleCode(last)));
  return lines.join("\n");
}

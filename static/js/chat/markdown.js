// The page's twin of conversations/rendering.py: Markdown to sanitised HTML, for a reply
// while it streams. Same parser (markdown-it, of which the server runs the Python port),
// same settings, same allow-list and link rule: all but the code below come from the
// server's JSON (`config`), so the two cannot drift apart. The libraries are vendored as
// published (static/vendor/, see its manifest.json).
//
// markdown-it's browser build is not an ES module: run as one, it defines `markdownit` on
// globalThis (chatsite/vendor.py says why it is used as published).
import "../../vendor/markdown-it/markdown-it.min.js";
import DOMPurify from "../../vendor/dompurify/purify.es.mjs";

const MarkdownIt = globalThis.markdownit;

const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#x27;" };
const escape = (text) => text.replace(/[&<>"']/g, (char) => ESCAPES[char]);

// As rendering._highlight, less the colours: pygments' spans arrive with the server's HTML.
const LANGUAGE = /^[A-Za-z0-9_+#.-]+$/;
function codeBlock(code, language) {
  let name = (language || "").trim().split(/\s+/)[0] || "";
  if (!LANGUAGE.test(name)) name = "";
  const label = escape(name || "text");
  return `<pre class="highlight" data-language="${label}"><code class="language-${label}">${escape(code)}</code></pre>`;
}

// As rendering._image_as_link: an image is never fetched, only linked.
function imageAsLink(tokens, index) {
  const token = tokens[index];
  const src = escape(token.attrGet("src") || "");
  const alt = escape((token.children || []).map((child) => child.content).join("") || src);
  return `<a href="${src}">${alt}</a>`;
}

// As rendering._alignment_classes: the CSP allows no inline style.
function alignmentClasses(alignments) {
  return (state) => {
    for (const token of state.tokens) {
      if (token.type !== "th_open" && token.type !== "td_open") continue;
      const style = token.attrGet("style");
      if (style === null) continue;
      token.attrs = token.attrs.filter(([name]) => name !== "style");
      if (alignments[style]) token.attrSet("class", alignments[style]);
    }
  };
}

// markdown-it's tokens (`parse`) and sanitised fragments (`render`) of Markdown text.
export function createMarkdown(config) {
  const md = new MarkdownIt(config.preset, { ...config.options, highlight: codeBlock });
  md.enable(config.rules);
  md.renderer.rules.image = imageAsLink;
  md.core.ruler.push("alignment_classes", alignmentClasses(config.alignments));

  // nh3's rules: these tags, these attributes on these tags only, these URL schemes (or
  // none: a relative link), and `rel` on every link.
  const purify = DOMPurify(window);
  const attributes = new Map(Object.entries(config.attributes).map(([tag, names]) => [tag, new Set(names)]));
  purify.addHook("uponSanitizeAttribute", (node, data) => {
    if (!attributes.get(node.nodeName.toLowerCase())?.has(data.attrName)) data.keepAttr = false;
  });
  purify.addHook("afterSanitizeAttributes", (node) => {
    if (node.nodeName === "A") node.setAttribute("rel", config.link_rel);
  });
  const schemes = config.url_schemes.map((scheme) => scheme.replace(/[^a-z]/g, "")).join("|");
  const options = {
    ALLOWED_TAGS: config.tags,
    ALLOWED_ATTR: [...new Set(Object.values(config.attributes).flat())],
    ALLOWED_URI_REGEXP: new RegExp(`^(?:(?:${schemes}):|[^a-z]|[a-z+.\\-]+(?:[^a-z+.\\-:]|$))`, "i"),
    ALLOW_DATA_ATTR: false,
    ALLOW_ARIA_ATTR: false,
    RETURN_DOM_FRAGMENT: true,
  };

  return {
    parse: (text, env = {}) => md.parse(text, env),
    render: (text, env = {}) => purify.sanitize(md.render(text, env), options),
  };
}

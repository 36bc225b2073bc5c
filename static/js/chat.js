// The chat page: one websocket per conversation (protocol v1, docs/protocol.md), the server
// the source of truth. One module per concern, wired here:
//   chat/connection.js  the socket: reconnects with backoff, resyncs from the server
//   chat/stream.js      applies the server's frames; a gap in `seq` means resync
//   chat/composer.js    typing, the pending send and its resend, Stop, Regenerate requests
//   chat/messages.js    the message list; new messages cloned from the server's <template>
//   chat/versions.js    versions of a message: switch, Edit in place, Regenerate; `thread`
//   chat/live.js        a reply rendered as Markdown while it streams (chat/markdown.js,
//                       chat/unfinished.js); the server's HTML replaces it when done
//   chat/decorate.js    local times and code Copy buttons on rendered messages
//   chat/rename.js      renaming in place; the title wherever it shows
//   chat/notice.js      the page's alert line
//   chat/uploads.js     files for the next message: Attach, paste, drop, upload progress
//   chat/copy.js        Copy message: a message's Markdown source to the clipboard
//   chat/model.js       the Model select: the conversation's model from its next turn
//   chat/home.js        the home page's first send creates the conversation, in place
//   chat/menu.js        the conversation menu: rename, Settings and Delete dialogs, pin, archive
//   chat/follow.js      "Jump to newest" when scrolled up from the end
//   chat/history.js     the thread a page at a time: earlier (and later) messages loaded
//                       as they scroll into view; what a resync asks for
//   chat/context.js     the context gauge, where the model's memory begins, a reply's note
import { Composer } from "./chat/composer.js";
import { Connection } from "./chat/connection.js";
import { ContextView } from "./chat/context.js";
import { bindCopy } from "./chat/copy.js";
import { decorate } from "./chat/decorate.js";
import { bindJumpToNewest } from "./chat/follow.js";
import { Home } from "./chat/home.js";
import { History } from "./chat/history.js";
import { createMarkdown } from "./chat/markdown.js";
import { bindDialogs, bindMenu } from "./chat/menu.js";
import { MessageList } from "./chat/messages.js";
import { bindModelPicker } from "./chat/model.js";
import { bindRename, showTitle } from "./chat/rename.js";
import { Stream } from "./chat/stream.js";
import { Uploads } from "./chat/uploads.js";
import { Versions } from "./chat/versions.js";

const root = document.getElementById("chat");
// Frames about the end of the thread: a page that does not show it (history.js) skips them.
const TAIL_FRAMES = new Set(["message", "delta", "thinking", "done", "superseded"]);

if (root && document.getElementById("log")) {
  // On the home page (no conversation yet) the first send or file creates one (home.js).
  const { conversationId, messagesUrl } = root.dataset;
  const currentId = () => root.dataset.conversationId;
  // The server's Markdown settings and allow-list (conversations/rendering.py), as JSON.
  const markdownConfig = document.getElementById("markdown-config");
  const markdown = markdownConfig ? createMarkdown(JSON.parse(markdownConfig.textContent)) : null;
  const messages = new MessageList(document.getElementById("log"), document.getElementById("message-template"));
  const jump = bindJumpToNewest(messages);
  // The controls that follow the reply being written and the list (called once all exist).
  const refreshPage = () => {
    const streaming = stream.isStreaming();
    composer.refresh(streaming);
    messages.refresh(streaming);
    versions.refresh(streaming);
    jump.refresh();
  };
  const connection = new Connection({
    conversationId,
    messagesUrl,
    onFrame: (frame) => {
      if (history.detached() && TAIL_FRAMES.has(frame.type)) return;
      stream.apply(frame);
      versions.apply(frame);
      modelContext.apply(frame);
    },
    onMessages: (html, known) => {
      if (known && !history.showTail(known, html)) {
        // The message it followed is gone from the page meanwhile: the newest page instead.
        connection.resync({ whole: true });
        return;
      }
      if (!known) {
        messages.replace(html);
        history.watch();
      }
      refreshPage();
      messages.scrollToBottom(true);
      versions.shown();
    },
    since: () => history.since(),
  });
  const history = new History({
    log: messages.log,
    messagesUrl,
    composerInput: document.getElementById("composer-input"),
    onJump: () => connection.resync({ whole: true }),
    onAttached: () => connection.resync(),
  });
  // The header's controls; again when the home page swaps in the new conversation's header.
  const bindHeader = () => {
    if (root.dataset.renameUrl) bindRename(currentId(), root.dataset.renameUrl);
    bindModelPicker();
    bindMenu({ onListChanged: showList });
  };
  const home = conversationId ? null : new Home({
    root,
    onCreated: (created) => {
      composer.adopt(created.id);
      history.url = created.messages_url;
      bindHeader();
      connection.open(created.id, created.messages_url);
    },
  });
  const uploads = new Uploads({
    root,
    form: document.getElementById("composer"),
    onChange: () => refreshPage(),
    ensureUrl: home ? () => home.ensure() : null,
  });
  const composer = new Composer({
    conversationId,
    connection,
    messages,
    uploads,
    refreshPage,
    isStreaming: () => stream.isStreaming(),
    beforeFirstSend: home ? () => home.ensure() : null,
  });
  const stream = new Stream({
    messages, connection, composer, refreshPage, markdown, showTitle: (title) => showTitle(currentId(), title),
  });
  const versions = new Versions({ messages, connection, composer });
  const modelContext = new ContextView(messages.log);
  bindHeader();
  bindDialogs();
  bindCopy(messages.log, document.getElementById("announcer"));
  decorate(messages.log);
  messages.scrollToBottom(true);
  history.showTarget(); // opened at a message (a search hit): that message, not the end
  refreshPage();
  if (conversationId) connection.connect();
  // New chat (the home page) puts the cursor where one types; so does a conversation's page
  // (not on touch screens, where it would open the keyboard over the conversation).
  // Not on a page opened at a message (a search hit): focusing the composer would jump to
  // the end (history.js).
  if (!location.hash && !history.detached() && matchMedia("(hover: hover)").matches) {
    composer.input.focus({ preventScroll: true });
  }
}

// The conversation list as the server renders it now (after a pin or an archive).
function showList(html) {
  const list = document.getElementById("conversation-list");
  if (list && typeof html === "string") list.innerHTML = html;
}

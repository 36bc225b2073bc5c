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
//   chat/context.js     the context gauge, where the model's memory begins, a reply's note
import { Composer } from "./chat/composer.js";
import { Connection } from "./chat/connection.js";
import { ContextView } from "./chat/context.js";
import { bindCopy } from "./chat/copy.js";
import { decorate } from "./chat/decorate.js";
import { createMarkdown } from "./chat/markdown.js";
import { MessageList } from "./chat/messages.js";
import { bindModelPicker } from "./chat/model.js";
import { bindRename, showTitle } from "./chat/rename.js";
import { Stream } from "./chat/stream.js";
import { Uploads } from "./chat/uploads.js";
import { Versions } from "./chat/versions.js";

const root = document.getElementById("chat");

if (root) {
  const { conversationId, messagesUrl, renameUrl } = root.dataset;
  // The server's Markdown settings and allow-list (conversations/rendering.py), as JSON.
  const markdownConfig = document.getElementById("markdown-config");
  const markdown = markdownConfig ? createMarkdown(JSON.parse(markdownConfig.textContent)) : null;
  const messages = new MessageList(document.getElementById("log"), document.getElementById("message-template"));
  // The controls that follow the reply being written and the list (called once all exist).
  const refreshPage = () => {
    const streaming = stream.isStreaming();
    composer.refresh(streaming);
    messages.refresh(streaming);
    versions.refresh(streaming);
  };
  const connection = new Connection({
    conversationId,
    messagesUrl,
    onFrame: (frame) => {
      stream.apply(frame);
      versions.apply(frame);
      modelContext.apply(frame);
    },
    onMessages: (html) => {
      messages.replace(html);
      refreshPage();
      messages.scrollToBottom(true);
      versions.shown();
    },
  });
  const uploads = new Uploads({ root, form: document.getElementById("composer"), onChange: () => refreshPage() });
  const composer = new Composer({
    conversationId, connection, messages, uploads, refreshPage, isStreaming: () => stream.isStreaming(),
  });
  const stream = new Stream({
    messages, connection, composer, refreshPage, markdown, showTitle: (title) => showTitle(conversationId, title),
  });
  const versions = new Versions({ messages, connection, composer });
  const modelContext = new ContextView(messages.log);
  bindRename(conversationId, renameUrl);
  bindCopy(messages.log, document.getElementById("announcer"));
  bindModelPicker();
  decorate(messages.log);
  messages.scrollToBottom(true);
  refreshPage();
  connection.connect();
}

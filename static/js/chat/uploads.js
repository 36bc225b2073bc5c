// Files for the next message: chosen with Attach, pasted, or dropped on the composer. Each is
// uploaded at once (POST /c/<uuid>/attachments/, with a progress bar) and shown as a chip
// with a Remove button; `send` then names the uploaded ones by id. The server decides what
// a file is (by its bytes) and says why it refuses one; the page only spares a person the
// obvious refusals (too large, too many, images for a model that cannot see).
import { gettext, interpolate, ngettext } from "./i18n.js";
import { showNotice } from "./notice.js";

const IMAGE_TYPES = ["image/png", "image/jpeg", "image/gif", "image/webp"];

// As Django's filesizeformat writes the sizes of the files already sent ("711 bytes",
// "1.5 KB"), so a chip and the sent file beside it agree. Plain concatenation: xgettext
// (`make messages`) loses its way in nested template literals.
export function formatSize(bytes) {
  const units = [["GB", 1 << 30], ["MB", 1 << 20], ["KB", 1 << 10]];
  for (const [unit, scale] of units) {
    if (bytes >= scale) return (bytes / scale).toFixed(1) + " " + unit;
  }
  return interpolate(ngettext("%s byte", "%s bytes", bytes), [bytes]);
}

export class Uploads {
  constructor({ root, form, onChange, ensureUrl }) {
    this.root = root;
    // The home page's first file makes the conversation it is uploaded to.
    this.ensureUrl = ensureUrl || null;
    this.vision = root.dataset.vision !== "false";
    this.maxBytes = Number(root.dataset.maxFileBytes) || Infinity;
    this.maxFiles = Number(root.dataset.maxFiles) || 10;
    this.form = form;
    this.list = document.getElementById("composer-files");
    this.input = document.getElementById("attach-input");
    this.button = document.getElementById("attach");
    this.template = document.getElementById("file-chip-template").content;
    this.csrf = form.querySelector("input[name=csrfmiddlewaretoken]").value;
    this.onChange = onChange;
    this.items = []; // {file, chip, request, attachment?: {id, name, media_type, size, url}}
    this.bind();
  }

  bind() {
    this.button.addEventListener("click", () => this.input.click());
    this.input.addEventListener("change", () => {
      this.add([...this.input.files]);
      this.input.value = ""; // the same file may be chosen again
    });
    // Paste: an image copied to the clipboard (a screenshot), or files copied in a file manager.
    this.form.addEventListener("paste", (event) => {
      const files = [...(event.clipboardData?.files || [])];
      if (files.length) {
        event.preventDefault();
        this.add(files);
      }
    });
    this.form.addEventListener("dragover", (event) => {
      if (![...(event.dataTransfer?.types || [])].includes("Files")) return;
      event.preventDefault();
      this.form.classList.add("composer--drop");
    });
    this.form.addEventListener("dragleave", (event) => {
      if (!this.form.contains(event.relatedTarget)) this.form.classList.remove("composer--drop");
    });
    this.form.addEventListener("drop", (event) => {
      this.form.classList.remove("composer--drop");
      const files = [...(event.dataTransfer?.files || [])];
      if (files.length) {
        event.preventDefault();
        this.add(files);
      }
    });
  }

  add(files) {
    for (const file of files) {
      if (this.items.length >= this.maxFiles) {
        showNotice(interpolate(gettext("A message can carry at most %s files."), [this.maxFiles]));
        break;
      }
      if (file.size > this.maxBytes) {
        showNotice(interpolate(gettext("“%s” is larger than %s."), [file.name, formatSize(this.maxBytes)]));
        continue;
      }
      if (!this.vision && IMAGE_TYPES.includes(file.type)) {
        showNotice(interpolate(gettext("The models of your API key cannot see images, so “%s” was not attached."), [file.name]));
        continue;
      }
      this.upload(file);
    }
  }

  async upload(file) {
    const item = this.addChip(file.name, file.size, file.type, { file, request: new XMLHttpRequest(), attachment: null });
    const { chip } = item;
    const progress = chip.querySelector("progress");
    progress.setAttribute("aria-label", interpolate(gettext("Uploading %s"), [file.name]));

    let url = this.root.dataset.attachmentsUrl;
    if (!url && this.ensureUrl) {
      try {
        url = await this.ensureUrl();
      } catch (error) {
        this.fail(item, error.message || gettext("Not connected. The file was not attached."));
        this.onChange();
        return;
      }
    }
    const request = item.request;
    request.open("POST", url);
    request.setRequestHeader("X-CSRFToken", this.csrf);
    request.setRequestHeader("Accept", "application/json");
    request.responseType = "json";
    request.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) progress.value = Math.round((event.loaded / event.total) * 100);
    });
    request.addEventListener("load", () => {
      const body = request.response || {};
      if (request.status === 201) {
        item.attachment = body;
        chip.dataset.state = "ready";
        chip.dataset.attachmentId = body.id;
        if (body.media_type?.startsWith("image/")) this.thumbnail(chip, body);
      } else {
        this.fail(item, body.error?.message || gettext("The file could not be attached."));
      }
      this.onChange();
    });
    request.addEventListener("error", () => {
      this.fail(item, gettext("Not connected. The file was not attached."));
      this.onChange();
    });
    const data = new FormData();
    data.append("file", file, file.name);
    request.send(data);
    this.onChange();
  }

  // A chip for a file (its name, size and kind), in the list, with its Remove button;
  // `fields` are the item's own (file, request, attachment).
  addChip(name, size, mediaType, fields) {
    const chip = this.template.querySelector("li").cloneNode(true);
    chip.querySelector(".file-chip__name").textContent = name;
    chip.querySelector(".file-chip__size").textContent = formatSize(size);
    chip.querySelector(".file-chip__icon").textContent = IMAGE_TYPES.includes(mediaType) ? "IMG" : mediaType === "application/pdf" ? "PDF" : "TXT";
    const remove = chip.querySelector(".file-chip__remove");
    remove.setAttribute("aria-label", interpolate(gettext("Remove %s"), [name]));
    const item = { ...fields, chip };
    remove.addEventListener("click", () => this.remove(item, true));
    this.items.push(item);
    this.list.append(chip);
    this.list.hidden = false;
    return item;
  }

  thumbnail(chip, attachment) {
    const image = document.createElement("img");
    image.className = "file-chip__thumb";
    image.src = attachment.url;
    image.alt = "";
    chip.querySelector(".file-chip__icon").replaceChildren(image);
  }

  fail(item, message) {
    item.chip.dataset.state = "failed";
    item.chip.querySelector(".file-chip__error").textContent = message;
  }

  remove(item, focusComposer = false) {
    if (item.request.readyState !== XMLHttpRequest.DONE) item.request.abort();
    item.chip.remove();
    this.items = this.items.filter((other) => other !== item);
    this.list.hidden = this.items.length === 0;
    if (focusComposer) document.getElementById("composer-input").focus();
    this.onChange();
  }

  busy() {
    return this.items.some((item) => item.chip.dataset.state === "uploading");
  }

  // The uploaded files, in the order chosen ({id, name, media_type, size, url}).
  ready() {
    return this.items.filter((item) => item.attachment).map((item) => item.attachment);
  }

  // Files of a refused send, uploaded already: chips again, ready to go with the next one.
  restore(attachments) {
    for (const attachment of attachments) {
      if (this.items.some((item) => item.attachment?.id === attachment.id)) continue;
      const { chip } = this.addChip(attachment.name, attachment.size, attachment.media_type, {
        file: null, request: { readyState: XMLHttpRequest.DONE }, attachment,
      });
      chip.dataset.state = "ready";
      chip.dataset.attachmentId = attachment.id;
      if (attachment.media_type.startsWith("image/")) this.thumbnail(chip, attachment);
    }
    this.list.hidden = this.items.length === 0;
    this.onChange();
  }

  // After a send: the chips go (failed ones too: their alert was read).
  clear() {
    for (const item of [...this.items]) this.remove(item);
  }
}

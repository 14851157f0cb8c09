// The chat panel: one room at a time over /ws/chat/{room}/. Messages are shown as the server
// broadcasts them (our own included), so every tab in the room shows the same conversation.

import { el, clock } from "./ui.js";

const ROOM_NAME = /^[A-Za-z0-9_.-]{1,64}$/;
const MAX_SHOWN = 300;

// Message ids are Redis stream ids, "<ms>-<n>": true when `a` comes after `b`.
function isAfter(a, b) {
  const [aMs, aN] = a.split("-").map(Number);
  const [bMs, bN] = b.split("-").map(Number);
  return aMs > bMs || (aMs === bMs && aN > bN);
}

export class ChatPanel {
  constructor({ hub, username, room, maxBytes, root }) {
    this.hub = hub;
    this.username = username;
    this.maxBytes = maxBytes;
    this.socket = null;
    this.room = "";
    this.roomForm = root.querySelector("#room-form");
    this.roomInput = root.querySelector("#chat-room");
    this.roomError = root.querySelector("#chat-room-error");
    this.leaveButton = root.querySelector("#chat-leave");
    this.status = root.querySelector("#chat-status");
    this.log = root.querySelector("#chat-log");
    this.form = root.querySelector("#chat-form");
    this.input = root.querySelector("#chat-message");
    this.sendButton = root.querySelector("#chat-send");
    this.messageError = root.querySelector("#chat-message-error");
    this.roomInput.value = room;
    hub.addEventListener("state", () => this.update());
    this.roomForm.addEventListener("submit", (event) => {
      event.preventDefault();
      this.join(this.roomInput.value.trim());
    });
    this.leaveButton.addEventListener("click", () => this.leave());
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.send();
    });
  }

  join(room) {
    if (!ROOM_NAME.test(room)) {
      this.showError(this.roomError, "Use 1–64 letters, digits, “.”, “_” or “-”.");
      this.roomInput.setAttribute("aria-invalid", "true");
      return;
    }
    this.showError(this.roomError, "");
    this.roomInput.setAttribute("aria-invalid", "false");
    if (this.socket && room === this.room) return;
    this.leave(false);
    this.room = room;
    this.log.replaceChildren();
    this.system(`You joined #${room}. Messages appear here as they are sent; earlier ones are not shown.`);
    let dropped = false;
    // After a dropped connection the socket comes back with ?after=<the last id shown>, and the
    // server sends what the room said meanwhile first.
    this.lastId = null;
    this.socket = this.hub.open({
      label: `chat #${room}`,
      path: () => `/ws/chat/${room}/${this.lastId ? `?after=${this.lastId}` : ""}`,
      onOpen: () => {
        if (dropped) this.system("Reconnected. Messages sent while you were away follow.");
        dropped = false;
        this.update();
      },
      onDrop: () => {
        dropped = true;
        this.system("Connection lost; reconnecting…");
        this.update();
      },
      onFrame: (frame) => this.receive(frame),
      onFinal: (code, detail) => {
        this.system(`Can't stay in #${room}: ${detail}`);
        this.leave(false);
      },
    });
    this.leaveButton.disabled = false;
    this.update();
  }

  leave(announce = true) {
    if (!this.socket) return;
    this.socket.close();
    this.socket = null;
    if (announce) this.system(`You left #${this.room}.`);
    this.room = "";
    this.leaveButton.disabled = true;
    this.update();
  }

  send() {
    const text = this.input.value;
    if (!text.trim()) {
      this.showError(this.messageError, "Write something first.");
      return;
    }
    const frame = JSON.stringify({ message: text });
    if (new TextEncoder().encode(frame).length > this.maxBytes) {
      this.showError(this.messageError, `That message is too long (the limit is ${this.maxBytes} bytes).`);
      return;
    }
    if (!this.socket || !this.socket.send(frame)) {
      this.showError(this.messageError, "Not connected; wait for the connection to come back.");
      return;
    }
    this.showError(this.messageError, "");
    this.input.value = "";
    this.input.focus();
  }

  receive(frame) {
    if (frame.type === "chat.message") {
      if (typeof frame.id === "string") {
        if (this.lastId && !isAfter(frame.id, this.lastId)) return; // shown already
        this.lastId = frame.id;
      }
      const mine = frame.sender === this.username;
      this.append(el("li", { class: `chat-message${mine ? " mine" : ""}` }, [
        el("div", { class: "chat-meta" }, [
          el("span", { class: "chat-sender" }, [mine ? `${frame.sender} (you)` : frame.sender]),
          el("time", { class: "chat-time", datetime: frame.ts }, [clock(frame.ts)]),
        ]),
        el("p", { class: "chat-text" }, [frame.message]),
      ]));
    } else if (frame.type === "error") {
      this.showError(this.messageError, frame.detail);
    }
  }

  system(text) {
    this.append(el("li", { class: "chat-system" }, [text]));
  }

  append(node) {
    const atBottom = this.log.scrollHeight - this.log.scrollTop - this.log.clientHeight < 40;
    this.log.append(node);
    while (this.log.children.length > MAX_SHOWN) this.log.firstElementChild.remove();
    if (atBottom) this.log.scrollTop = this.log.scrollHeight;
  }

  update() {
    const open = this.socket && this.socket.state === "open";
    this.input.disabled = !this.socket;
    this.sendButton.disabled = !open;
    if (!this.socket) this.status.textContent = "Not in a room.";
    else if (open) this.status.textContent = `In #${this.room} as ${this.username}.`;
    else this.status.textContent = `Connecting to #${this.room}…`;
    this.status.dataset.state = this.socket ? this.socket.state : "none";
  }

  showError(node, text) {
    node.textContent = text;
    node.hidden = !text;
  }
}

// The socket console: every frame in and out of every socket, filterable, and a box that sends
// any JSON frame on any socket path (an open socket is reused; another path opens a new one).

import { socketBasePath } from "./sockets.js";
import { el, clock } from "./ui.js";

const MAX_ROWS = 2000;
const ARROWS = { in: "↓", out: "↑", info: "•" };
const DIRECTION_NAMES = { in: "received", out: "sent", info: "connection" };
const SUGGESTED_PATHS = ["/ws/events/", "/ws/chat/lobby/", "/chat/"];

// "/ws/jobs/3f1c9a2e-…/" → "/ws/jobs/3f1c9a2e…/": the full path stays in the row's title.
function shortPath(path) {
  return path.replace(/[0-9a-f]{8}-[0-9a-f-]{27}/gi, (id) => `${id.slice(0, 8)}…`);
}

export class ConsolePanel {
  constructor({ hub, root }) {
    this.hub = hub;
    this.log = root.querySelector("#console-log");
    this.count = root.querySelector("#console-count");
    this.filterInput = root.querySelector("#console-filter");
    this.directionSelect = root.querySelector("#console-direction");
    this.socketSelect = root.querySelector("#console-socket");
    this.follow = root.querySelector("#console-follow");
    this.form = root.querySelector("#console-send");
    this.pathInput = root.querySelector("#console-path");
    this.frameInput = root.querySelector("#console-frame");
    this.sendError = root.querySelector("#console-send-error");
    this.pathList = root.querySelector("#console-paths");
    this.socketList = root.querySelector("#socket-list");
    this.knownSockets = new Set();
    this.byEvent = new Map();
    this.mine = new Set();
    this.total = 0;
    this.visible = 0;

    hub.addEventListener("frame", (event) => this.add(event.detail));
    hub.addEventListener("state", () => this.renderSockets());
    for (const control of [this.filterInput, this.directionSelect, this.socketSelect]) {
      control.addEventListener("input", () => this.applyFilter());
    }
    root.querySelector("#console-clear").addEventListener("click", () => this.clear());
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.send();
    });
    this.frameInput.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
        event.preventDefault();
        this.send();
      }
    });
    this.renderSockets();
  }

  add({ socket, direction, text, at }) {
    const url = socket.url;
    const base = socketBasePath(url);
    this.noteSocket(base);
    let data = null;
    let type = "";
    if (direction !== "info") {
      try {
        data = JSON.parse(text);
        if (data && typeof data.type === "string") type = data.type;
      } catch {
        type = "not JSON";
      }
    }
    // A job event reaches the page on its job stream and on the user's feed: one row, both paths.
    const key = direction === "in" && data && data.job && Number.isInteger(data.seq) ? `${type} ${data.job} ${data.seq}` : "";
    const earlier = key ? this.byEvent.get(key) : null;
    if (earlier && !earlier.sockets.includes(base)) {
      earlier.sockets.push(base);
      this.describeSockets(earlier.row, earlier.sockets, text);
      this.refilter(earlier.row);
      return;
    }
    const row = el("li", {
      class: `frame frame-${direction}${type === "error" ? " frame-error" : ""}`,
      "data-dir": direction,
      "data-url": url,
    }, [
      el("time", { class: "frame-time", datetime: at.toISOString() }, [clock(at, true)]),
      el("span", { class: "frame-dir", title: DIRECTION_NAMES[direction], "aria-label": DIRECTION_NAMES[direction] },
        [ARROWS[direction]]),
      el("span", { class: "frame-path" }),
      el("span", { class: "frame-body" }, [
        type ? el("span", { class: "frame-type" }, [type]) : "",
        earlier ? el("span", { class: "frame-repeat", title: "This socket already delivered this event" }, ["repeat"]) : "",
        el("code", { class: direction === "info" ? "frame-info" : "frame-json" }, [text]),
      ]),
    ]);
    row.dataset.url = url;
    this.describeSockets(row, [base], text);
    if (key && !earlier) {
      row.dataset.key = key;
      this.byEvent.set(key, { row, sockets: [base] });
    }
    this.log.append(row);
    this.total += 1;
    row.hidden = !this.matches(row);
    if (!row.hidden) this.visible += 1;
    while (this.log.children.length > MAX_ROWS) this.drop(this.log.firstElementChild);
    this.renderCount();
    if (this.follow.checked && !row.hidden) this.log.scrollTop = this.log.scrollHeight;
  }

  describeSockets(row, sockets, text) {
    const url = row.dataset.url;
    const paths = [url, ...sockets.slice(1)];
    const cell = row.querySelector(".frame-path");
    cell.replaceChildren(...paths.map((path) => el("span", {}, [shortPath(path)])));
    cell.title = sockets.length > 1 ? `Received on ${paths.join(" and ")}` : url;
    row.dataset.sockets = sockets.join(" ");
    row.dataset.search = `${paths.join(" ")} ${text}`.toLowerCase();
  }

  refilter(row) {
    const was = !row.hidden;
    row.hidden = !this.matches(row);
    this.visible += (!row.hidden ? 1 : 0) - (was ? 1 : 0);
    this.renderCount();
  }

  drop(row) {
    if (!row.hidden) this.visible -= 1;
    if (row.dataset.key) this.byEvent.delete(row.dataset.key);
    row.remove();
    this.total -= 1;
  }

  matches(row) {
    const text = this.filterInput.value.trim().toLowerCase();
    const direction = this.directionSelect.value;
    const socket = this.socketSelect.value;
    if (direction && row.dataset.dir !== direction) return false;
    if (socket && !row.dataset.sockets.split(" ").includes(socket)) return false;
    return !text || row.dataset.search.includes(text);
  }

  applyFilter() {
    this.visible = 0;
    for (const row of this.log.children) {
      row.hidden = !this.matches(row);
      if (!row.hidden) this.visible += 1;
    }
    this.renderCount();
    if (this.follow.checked) this.log.scrollTop = this.log.scrollHeight;
  }

  clear() {
    this.log.replaceChildren();
    this.byEvent.clear();
    this.total = 0;
    this.visible = 0;
    this.renderCount();
  }

  renderCount() {
    const frames = `${this.total} ${this.total === 1 ? "line" : "lines"}`;
    this.count.textContent = !this.total
      ? "No frames yet."
      : this.visible === this.total ? frames : `${frames}, ${this.visible} shown`;
  }

  noteSocket(base) {
    if (this.knownSockets.has(base)) return;
    this.knownSockets.add(base);
    this.socketSelect.append(el("option", { value: base }, [shortPath(base)]));
    this.renderPaths();
  }

  renderPaths() {
    const paths = new Set([...SUGGESTED_PATHS, ...this.knownSockets]);
    this.pathList.replaceChildren(...[...paths].map((path) => el("option", { value: path })));
  }

  send() {
    const path = this.pathInput.value.trim();
    const text = this.frameInput.value.trim();
    if (!path.startsWith("/")) return this.fail("A socket path starts with “/”, e.g. /ws/events/.");
    try {
      JSON.parse(text);
    } catch (error) {
      return this.fail(`That isn't valid JSON: ${error.message}`);
    }
    this.fail("");
    const socket = this.hub.find(path);
    if (socket && socket.state === "open") {
      socket.send(text);
      return;
    }
    if (socket) return this.fail(`${shortPath(path)} is not connected right now; try again when it is.`);
    const opened = this.hub.open({
      label: "console",
      path,
      retry: false,
      onOpen: () => opened.send(text),
      onFinal: (code, detail) => {
        opened.close();
        this.mine.delete(opened);
        if (code !== 1000) this.fail(`${shortPath(path)} closed: ${detail}`);
      },
    });
    this.mine.add(opened);
  }

  fail(text) {
    this.sendError.textContent = text;
    this.sendError.hidden = !text;
  }

  renderSockets() {
    const items = [...this.hub.sockets].map((socket) => {
      const path = socket.url || socket.currentPath();
      const item = el("li", { class: "socket", "data-state": socket.state, "data-path": path }, [
        el("span", { class: "socket-state", title: socket.state }, [socket.state]),
        el("code", { class: "socket-path", title: path }, [shortPath(path)]),
        el("span", { class: "socket-label" }, [socket.label]),
      ]);
      if (this.mine.has(socket)) {
        const close = el("button", { type: "button", class: "btn btn-small", "aria-label": `Close ${path}` },
          ["Close"]);
        close.addEventListener("click", () => {
          this.mine.delete(socket);
          socket.close();
        });
        item.append(close);
      }
      return item;
    });
    this.socketList.replaceChildren(...items);
    if (!items.length) this.socketList.append(el("li", { class: "muted" }, ["No sockets open."]));
  }
}

// Every WebSocket on the page goes through a SocketHub: it reconnects with backoff, and it tells
// listeners about each frame in and out (the console panel) and about connection state (the
// status pill in the header).

const RETRY_BASE_MS = 500;
const RETRY_MAX_MS = 8000;
// The server refused the request itself (bad input, unknown job, not signed in): retrying
// would get the same answer. 4429 (flooding) is retried, after the backoff.
const FINAL_CLOSE_CODES = new Set([4400, 4401, 4404]);
const CLOSE_REASONS = {
  1000: "closed normally",
  1001: "server going away",
  1006: "connection lost",
  1011: "server error",
  4400: "bad request",
  4401: "not signed in",
  4404: "not found",
  1013: "server busy; try again later",
  4429: "too many messages",
};

export function socketBasePath(path) {
  return path.split("?")[0];
}

export class SocketHub extends EventTarget {
  constructor() {
    super();
    this.sockets = new Set();
    window.addEventListener("online", () => this.retryAll());
  }

  // options: {path: string | () => string, label, onFrame(data), onOpen(), onFinal(code, detail), retry}
  open(options) {
    const socket = new LiveSocket(this, options);
    this.sockets.add(socket);
    socket.connect();
    this.changed();
    return socket;
  }

  find(path) {
    for (const socket of this.sockets) {
      if (socket.currentPath() === path || socket.basePath() === path) return socket;
    }
    return null;
  }

  retryAll() {
    for (const socket of this.sockets) socket.retryNow();
  }

  forget(socket) {
    this.sockets.delete(socket);
    this.changed();
  }

  changed() {
    this.dispatchEvent(new CustomEvent("state"));
  }

  logFrame(socket, direction, text) {
    this.dispatchEvent(new CustomEvent("frame", { detail: { socket, direction, text, at: new Date() } }));
  }

  // The page's overall connection state, worst first.
  summary() {
    const all = [...this.sockets];
    const retrying = all.filter((s) => s.state === "retrying");
    if (retrying.length) {
      const nextAt = Math.min(...retrying.map((s) => s.retryAt));
      return { state: "reconnecting", count: all.length, down: retrying.length, nextAt };
    }
    const failed = all.filter((s) => s.state === "failed");
    if (failed.some((s) => s.closeCode === 4401)) return { state: "signed-out", count: all.length };
    if (all.some((s) => s.state === "connecting")) return { state: "connecting", count: all.length };
    const open = all.filter((s) => s.state === "open").length;
    return { state: open ? "open" : "idle", count: open };
  }
}

class LiveSocket {
  constructor(hub, { path, label, onFrame, onOpen, onFinal, onDrop, retry = true }) {
    this.hub = hub;
    this.path = path;
    this.label = label || "";
    this.onFrame = onFrame || (() => {});
    this.onOpen = onOpen || (() => {});
    this.onFinal = onFinal || (() => {});
    this.onDrop = onDrop || (() => {});
    this.retry = retry;
    this.state = "connecting";
    this.attempts = 0;
    this.ws = null;
    this.timer = null;
    this.retryAt = 0;
    this.closeCode = null;
    this.lastError = null;
    this.closing = false;
    this.url = "";
  }

  currentPath() {
    return typeof this.path === "function" ? this.path() : this.path;
  }

  basePath() {
    return socketBasePath(this.url || this.currentPath());
  }

  connect() {
    this.timer = null;
    this.url = this.currentPath();
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${scheme}//${location.host}${this.url}`);
    this.ws = ws;
    this.setState("connecting");
    this.info(this.attempts ? `connecting (attempt ${this.attempts + 1})` : "connecting");
    ws.addEventListener("open", () => {
      if (this.closing) {
        ws.close(1000);
        return;
      }
      this.attempts = 0;
      this.setState("open");
      this.info("open");
      this.onOpen();
    });
    ws.addEventListener("message", (event) => {
      const text = typeof event.data === "string" ? event.data : "(binary frame)";
      this.hub.logFrame(this, "in", text);
      let data;
      try {
        data = JSON.parse(text);
      } catch {
        return;
      }
      if (data && data.type === "error") this.lastError = data;
      this.onFrame(data, this);
    });
    ws.addEventListener("close", (event) => this.closed(ws, event));
  }

  closed(ws, event) {
    if (ws !== this.ws) return;
    this.ws = null;
    this.closeCode = event.code;
    const why = CLOSE_REASONS[event.code] || "closed";
    this.info(`closed ${event.code} (${why})${event.reason ? `: ${event.reason}` : ""}`);
    if (this.closing) {
      this.setState("closed");
      this.hub.forget(this);
      return;
    }
    if (!this.retry || FINAL_CLOSE_CODES.has(event.code)) {
      this.setState("failed");
      this.onFinal(event.code, this.lastError ? this.lastError.detail : why);
      return;
    }
    this.onDrop(event.code);
    this.scheduleRetry();
  }

  // Full jitter (anywhere from 0 to the ceiling), so a crowd that lost its server at the same
  // moment comes back spread out instead of in waves; never sooner than the server's own hint
  // (`retry_after` in the error frame before a 1013: it is taking in too many sockets at once).
  scheduleRetry() {
    const ceiling = Math.min(RETRY_MAX_MS, RETRY_BASE_MS * 2 ** this.attempts);
    const hinted = this.closeCode === 1013 && this.lastError ? Number(this.lastError.retry_after) || 0 : 0;
    const delay = Math.round(Math.max(Math.random() * ceiling, hinted * 1000 * (1 + Math.random())));
    this.attempts += 1;
    this.retryAt = Date.now() + delay;
    this.timer = setTimeout(() => this.connectWhenOnline(), delay);
    this.info(`reconnecting in ${(delay / 1000).toFixed(1)} s`);
    this.setState("retrying");
  }

  // While the browser knows it is offline an attempt can only fail (and Chromium logs each
  // failure); the hub's "online" listener retries every waiting socket the moment it is back.
  connectWhenOnline() {
    this.timer = null;
    if (navigator.onLine === false) {
      this.info("offline; waiting for the network");
      return;
    }
    this.connect();
  }

  retryNow() {
    if (this.state !== "retrying") return;
    clearTimeout(this.timer);
    this.connect();
  }

  send(frame) {
    const text = typeof frame === "string" ? frame : JSON.stringify(frame);
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(text);
    this.hub.logFrame(this, "out", text);
    return true;
  }

  // Stop for good: no more retries; the hub forgets the socket once it has closed.
  close() {
    if (this.closing) return;
    this.closing = true;
    clearTimeout(this.timer);
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.close(1000);
    } else if (!this.ws || this.ws.readyState !== WebSocket.CONNECTING) {
      // Closing a socket that is still connecting makes Chromium log an error, so such a
      // socket is closed from its open handler instead.
      this.ws = null;
      this.setState("closed");
      this.hub.forget(this);
    }
  }

  setState(state) {
    this.state = state;
    this.hub.changed();
  }

  info(text) {
    this.hub.logFrame(this, "info", text);
  }
}

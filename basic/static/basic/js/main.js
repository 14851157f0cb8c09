// Wires the panels to one SocketHub and keeps the connection state in the header up to date.

import { SocketHub } from "./sockets.js";
import { JobsPanel } from "./jobs.js";
import { StudentsPanel } from "./students.js";
import { ChatPanel } from "./chat.js";
import { ConsolePanel } from "./console.js";

const config = JSON.parse(document.getElementById("console-config").textContent);
const hub = new SocketHub();
// The console listens first, so it logs the very first frames too.
new ConsolePanel({ hub, root: document.querySelector(".panel-console") });
const jobs = new JobsPanel({
  hub,
  kinds: config.kinds,
  urls: config.urls,
  username: config.username,
  root: document.querySelector(".panel-jobs"),
});
const students = new StudentsPanel({ urls: config.urls, root: document.querySelector(".panel-students") });
const chat = new ChatPanel({
  hub,
  username: config.username,
  room: config.chat.room,
  maxBytes: config.chat.maxBytes,
  root: document.querySelector(".panel-chat"),
});

// The user's event feed: it keeps the page connected, and shows jobs started elsewhere. It has
// no replay, so after a reconnect the job list is fetched again.
let feedDropped = false;
hub.open({
  label: "your job events",
  path: "/ws/events/",
  onFrame: (frame) => jobs.onFeedEvent(frame),
  onDrop: () => {
    feedDropped = true;
  },
  onOpen: () => {
    if (feedDropped) jobs.load();
    feedDropped = false;
  },
});

const pill = document.getElementById("connection");
const pillText = pill.querySelector(".conn-text");
const retryButton = pill.querySelector(".conn-retry");
retryButton.addEventListener("click", () => hub.retryAll());

function renderConnection() {
  const summary = hub.summary();
  const sockets = `${summary.count} ${summary.count === 1 ? "socket" : "sockets"}`;
  let text;
  if (summary.state === "reconnecting") {
    const seconds = Math.max(0, Math.ceil((summary.nextAt - Date.now()) / 1000));
    text = seconds ? `Connection lost · retrying in ${seconds} s` : "Connection lost · retrying now";
  } else if (summary.state === "signed-out") {
    text = "Signed out · reload to sign in";
  } else if (summary.state === "connecting") {
    text = "Connecting…";
  } else if (summary.state === "open") {
    text = `Live · ${sockets}`;
  } else {
    text = "Not connected";
  }
  if (!navigator.onLine) text = "Offline · waiting for the network";
  if (pill.dataset.state !== summary.state) pill.dataset.state = summary.state;
  if (pillText.textContent !== text) pillText.textContent = text;
  retryButton.hidden = summary.state !== "reconnecting";
}

hub.addEventListener("state", renderConnection);
setInterval(renderConnection, 500);
window.addEventListener("offline", renderConnection);
renderConnection();

jobs.load();
students.refresh();
chat.join(config.chat.room);

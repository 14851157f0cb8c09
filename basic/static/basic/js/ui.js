// Small DOM helpers shared by the panels.

export function el(tag, attributes = {}, children = []) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === false || value === null || value === undefined) continue;
    node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children) node.append(child);
  return node;
}

const pad = (n, width = 2) => String(n).padStart(width, "0");

// "14:02:07" for an ISO timestamp or a Date, in the browser's time zone.
export function clock(value, withMillis = false) {
  const date = value instanceof Date ? value : new Date(value);
  if (Number.isNaN(date.getTime())) return "";
  const base = `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
  return withMillis ? `${base}.${pad(date.getMilliseconds(), 3)}` : base;
}

// "0:07", "12:45", "1:02:03".
export function duration(ms) {
  const total = Math.max(0, Math.floor(ms / 1000));
  const hours = Math.floor(total / 3600);
  const minutes = Math.floor((total % 3600) / 60);
  const seconds = total % 60;
  return hours ? `${hours}:${pad(minutes)}:${pad(seconds)}` : `${minutes}:${pad(seconds)}`;
}

// A dismissable message at the top of the page: "error", "warn" or "info".
export function notify(text, level = "info") {
  const box = document.getElementById("notices");
  const close = el("button", { type: "button", class: "notice-close", "aria-label": "Dismiss" }, ["×"]);
  const notice = el("div", { class: `notice notice-${level}`, role: level === "error" ? "alert" : "status" }, [
    el("span", { class: "notice-text" }, [text]),
    close,
  ]);
  close.addEventListener("click", () => notice.remove());
  box.append(notice);
  while (box.children.length > 4) box.firstElementChild.remove();
  if (level !== "error") setTimeout(() => notice.remove(), 8000);
}

// Show a serializer's field errors next to their fields; `fields` maps a field name to its
// error element. Errors for other fields go to `fallback`. Returns whether any were shown.
export function showFieldErrors(errors, fields, fallback) {
  let shown = false;
  const rest = [];
  for (const [name, node] of Object.entries(fields)) {
    const messages = errors[name];
    const input = document.getElementById(node.id.replace(/-error$/, ""));
    node.textContent = messages ? [].concat(messages).join(" ") : "";
    node.hidden = !messages;
    if (input) input.setAttribute("aria-invalid", messages ? "true" : "false");
    shown ||= Boolean(messages);
  }
  for (const [name, messages] of Object.entries(errors)) {
    if (!(name in fields)) rest.push([].concat(messages).join(" "));
  }
  if (fallback) {
    fallback.textContent = rest.join(" ");
    fallback.hidden = rest.length === 0;
  }
  return shown || rest.length > 0;
}

export function clearFieldErrors(fields, fallback) {
  showFieldErrors({}, fields, fallback);
}

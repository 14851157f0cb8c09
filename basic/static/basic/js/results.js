// What a finished job's row shows of its `result`, per kind; a kind without its own view gets a
// compact key/value list. Everything is set as text (a fetched page's title is someone else's
// words, never HTML).

import { el, clock } from "./ui.js";

const number = new Intl.NumberFormat();
const decimal = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });
const MAX_KEYS = 12;
const MAX_VALUE = 120;

export function formatBytes(bytes) {
  if (!Number.isFinite(bytes)) return "";
  if (bytes < 1024) return `${number.format(bytes)} ${bytes === 1 ? "byte" : "bytes"}`;
  const units = ["KB", "MB", "GB"];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${decimal.format(value)} ${units[unit]}`;
}

const plural = (count, one, many) => `${number.format(count)} ${count === 1 ? one : many}`;

function report(job, result) {
  if (!Number.isFinite(result.rows)) return null;
  return [el("p", { class: "result-stat" }, [plural(result.rows, "row", "rows")])];
}

function thumbnails(job, result, { jobsUrl }) {
  if (!Array.isArray(result.thumbnails)) return null;
  const base = `${jobsUrl}${job.id}/files/`;
  const items = result.thumbnails.map((thumb) => {
    const src = `${base}${encodeURIComponent(thumb.name)}/`;
    const size = `${thumb.width}×${thumb.height}`;
    return el("li", { class: "thumb" }, [
      el("a", { class: "thumb-link", href: src, target: "_blank", rel: "noopener", title: `${thumb.name} (${size})`,
        "aria-label": `Open ${thumb.name}, ${size} px` }, [
        el("img", { src, alt: `${thumb.name}, ${size} px`, width: thumb.width, height: thumb.height,
          loading: "lazy", decoding: "async" }),
      ]),
      el("span", { class: "thumb-size" }, [size]),
    ]);
  });
  return [el("ul", { class: "thumbs", "aria-label": `Thumbnails of job ${job.id.slice(0, 8)}` }, items)];
}

function page(job, result) {
  if (typeof result.status_code !== "number") return null;
  const ok = result.status_code >= 200 && result.status_code < 300;
  const facts = [
    el("span", { class: `badge badge-http${ok ? "" : " badge-warn"}`, title: "HTTP status" },
      [`HTTP ${result.status_code}`]),
    el("span", { class: "page-bytes", title: `${number.format(result.bytes)} bytes` }, [formatBytes(result.bytes)]),
  ];
  if (result.content_type) facts.push(el("span", { class: "page-type" }, [result.content_type.split(";")[0]]));
  if (result.cached) {
    const when = result.fetched_at ? `; fetched at ${clock(result.fetched_at)}` : "";
    facts.push(el("span", { class: "badge badge-cached", title: `Served from the cache${when}` }, ["cached"]));
  }
  // The row's head shows the URL asked for; a redirect's end is worth saying.
  const moved = result.final_url && result.final_url !== result.url ? result.final_url : "";
  return [
    el("p", { class: `page-title${result.title ? "" : " muted"}` }, [result.title || "(no title)"]),
    moved ? el("p", { class: "page-url", title: moved }, [`→ ${moved}`]) : "",
    el("p", { class: "page-facts" }, facts),
  ];
}

function valueText(value) {
  if (value === null || value === undefined) return "–";
  const text = typeof value === "object" ? JSON.stringify(value) : String(value);
  return text.length > MAX_VALUE ? `${text.slice(0, MAX_VALUE - 1)}…` : text;
}

function keyValues(job, result) {
  const entries = Object.entries(result);
  if (!entries.length) return null;
  const rows = entries.slice(0, MAX_KEYS).flatMap(([key, value]) => [
    el("dt", {}, [key]),
    el("dd", { title: typeof value === "object" ? JSON.stringify(value) : String(value) }, [valueText(value)]),
  ]);
  if (entries.length > MAX_KEYS) rows.push(el("dt", {}, ["…"]), el("dd", {}, [`${entries.length - MAX_KEYS} more`]));
  return [el("dl", { class: "result-kv" }, rows)];
}

const VIEWS = {
  students_by_age: { download: "Download CSV", render: report },
  thumbnails: { download: "Download zip", render: thumbnails },
  page_fetch: { download: "Download page", render: page },
};

export function downloadText(kind) {
  return (VIEWS[kind] || {}).download || "Download";
}

// The nodes showing a finished job's result (empty when there is nothing to show).
export function resultNodes(job, result, options) {
  if (!result || typeof result !== "object") return [];
  const view = VIEWS[job.data.kind];
  return (view && view.render(job, result, options)) || keyValues(job, result) || [];
}

// A line saying what a job works on, from its parameters (its URL, its upload).
export function subjectText(kind, params) {
  if (!params || typeof params !== "object") return "";
  if (kind === "page_fetch") return params.url || "";
  if (kind === "thumbnails") {
    const sizes = Array.isArray(params.sizes) ? params.sizes.map((box) => [].concat(box).join("×")).join(", ") : "";
    return [params.image, sizes].filter(Boolean).join(" → ");
  }
  return "";
}

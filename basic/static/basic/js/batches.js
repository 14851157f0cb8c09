// Batches in the jobs panel: one bar per batch (its aggregate from /ws/batches/{id}/), with a
// disclosure that opens into its members' bars. Members get no socket of their own (a batch may
// have a hundred): the batch's snapshot draws them, and the user feed (/ws/events/) moves them.
//
// The batch stream follows the job stream's rules: a snapshot carrying the seq it reflects, then
// each event with the next seq; after a dropped connection `?after=<last seq seen>`.

import { api } from "./api.js";
import { el, notify } from "./ui.js";
import { takeInOrder } from "./feed-order.js";

const ACTIVE = new Set(["scheduled", "queued", "running"]);
const ENDS = new Set(["batch.done", "batch.failed", "batch.cancelled"]);
const STATUS_TEXT = {
  scheduled: "Scheduled", queued: "Queued", running: "Running", done: "Done", failed: "Failed", cancelled: "Cancelled",
};

export class BatchList {
  constructor({ hub, url, list, panel }) {
    this.hub = hub;
    this.url = url;
    this.list = list;
    this.panel = panel;
    this.batches = new Map();
    this.pending = new Map();
  }

  async load() {
    try {
      const page = await api.get(this.url);
      for (const data of page.results.slice().reverse()) this.upsert(data);
    } catch (error) {
      notify(`Couldn't load your batches: ${error.message}`, "error");
    }
  }

  has(id) {
    return this.batches.has(id);
  }

  // A batch from REST (a start's 202, the list, a fetch): its row, and its members' rows inside it.
  upsert(data) {
    let batch = this.batches.get(data.id);
    if (!batch) {
      batch = { id: data.id, data, lastSeq: null, stream: null, cancelling: false };
      batch.row = this.createRow(batch);
      this.batches.set(data.id, batch);
      this.list.prepend(batch.row);
    }
    if (batch.lastSeq === null) batch.data = { ...batch.data, ...data };
    for (const member of data.members || []) this.panel.upsert({ ...member, batch: data.id });
    this.render(batch);
    if (ACTIVE.has(batch.data.status) && !batch.stream) this.watch(batch);
    return batch;
  }

  // Put a member job's row inside its batch (fetching the batch if this page doesn't know it yet).
  adopt(job) {
    const batch = this.batches.get(job.data.batch);
    if (batch) {
      if (job.row.parentNode !== batch.members) batch.members.append(job.row);
      return;
    }
    this.fetch(job.data.batch);
  }

  fetch(id) {
    if (this.pending.has(id)) return;
    this.pending.set(id, api.get(`${this.url}${id}/`).then((data) => this.upsert(data)).catch(() => {})
      .finally(() => this.pending.delete(id)));
  }

  // A batch event on the user feed: a batch this page doesn't know yet was started elsewhere.
  onFeedEvent(frame) {
    if (!this.batches.has(frame.batch)) this.fetch(frame.batch);
  }

  watch(batch) {
    batch.stream = this.hub.open({
      label: `batch ${batch.id.slice(0, 8)}`,
      path: () => `/ws/batches/${batch.id}/${batch.lastSeq === null ? "" : `?after=${batch.lastSeq}`}`,
      onFrame: (frame, socket) => this.onFrame(batch, frame, socket),
      onFinal: () => this.stopWatching(batch),
    });
  }

  stopWatching(batch) {
    if (batch.stream) batch.stream.close();
    batch.stream = null;
  }

  onFrame(batch, frame, socket) {
    if (frame.batch !== batch.id || typeof frame.seq !== "number") return;
    if (frame.type === "batch.snapshot") {
      batch.lastSeq = frame.seq;
      for (const member of frame.members) {
        this.panel.upsertMember({ id: member.job, kind: member.kind, status: member.status,
          progress: member.progress, message: member.message, seq: member.seq, batch: batch.id });
      }
    } else {
      if (!takeInOrder(batch, frame, socket)) return;
      if (ENDS.has(frame.type)) batch.data.finished = frame.ts;
    }
    const counts = { queued: frame.queued, running: frame.running, done: frame.done, failed: frame.failed,
      cancelled: frame.cancelled };
    batch.data = { ...batch.data, status: frame.status, progress: frame.progress, counts, message: frame.message };
    if (!ACTIVE.has(batch.data.status)) {
      batch.cancelling = false;
      this.stopWatching(batch);
    }
    this.render(batch);
  }

  async cancel(batch) {
    batch.cancelling = true;
    this.render(batch);
    try {
      const data = await api.post(`${this.url}${batch.id}/cancel/`);
      if (batch.lastSeq === null) this.upsert(data);
    } catch (error) {
      batch.cancelling = false;
      this.render(batch);
      notify(`Couldn't cancel the batch: ${error.message}`, error.status === 409 ? "info" : "error");
    }
  }

  createRow(batch) {
    const short = batch.id.slice(0, 8);
    batch.members = el("ul", { class: "job-list batch-members", "aria-label": `Jobs of batch ${short}` });
    batch.summary = el("summary", { class: "batch-summary" });
    const row = el("li", { class: "job batch", "data-batch-id": batch.id }, [
      el("div", { class: "job-head" }, [
        el("span", { class: "job-kind" }, ["Batch"]),
        el("span", { class: "badge job-status" }),
        el("span", { class: "job-subject batch-counts" }),
      ]),
      el("div", { class: "job-progress" }, [
        el("div", { class: "progress", role: "progressbar", "aria-valuemin": "0", "aria-valuemax": "100",
          "aria-valuenow": "0", "aria-label": `Progress of batch ${short}` }, [el("div", { class: "bar" })]),
        el("span", { class: "job-percent" }),
      ]),
      el("div", { class: "job-foot" }, [
        el("div", { class: "job-text" }, [el("p", { class: "job-message" }), el("p", { class: "job-meta" }, [`#${short}`])]),
        el("div", { class: "job-actions" }, [
          el("a", { class: "btn btn-small btn-success batch-download", hidden: "", download: "" }, ["Download zip"]),
          el("button", { type: "button", class: "btn btn-small btn-danger batch-cancel", hidden: "" }, ["Cancel all"]),
        ]),
      ]),
      el("details", { class: "batch-details" }, [batch.summary, batch.members]),
    ]);
    row.querySelector(".batch-cancel").addEventListener("click", () => this.cancel(batch));
    return row;
  }

  render(batch) {
    const { row, data } = batch;
    const q = (selector) => row.querySelector(selector);
    const status = data.status || "queued";
    const progress = Math.max(0, Math.min(100, data.progress || 0));
    const counts = data.counts || {};
    row.dataset.status = status;
    row.dataset.seq = batch.lastSeq === null ? "" : String(batch.lastSeq);
    q(".job-status").textContent = batch.cancelling && ACTIVE.has(status) ? "Cancelling…" : STATUS_TEXT[status] || status;
    q(".progress").setAttribute("aria-valuenow", String(progress));
    q(".bar").style.width = `${progress}%`;
    q(".job-percent").textContent = `${progress}%`;
    const parts = ["done", "running", "queued", "failed", "cancelled"].filter((name) => counts[name])
      .map((name) => `${counts[name]} ${name}`);
    q(".batch-counts").textContent = parts.join(" · ");
    q(".job-message").textContent = data.message || "";
    batch.summary.textContent = `${data.total} ${data.total === 1 ? "job" : "jobs"}`;
    const download = q(".batch-download");
    download.hidden = !(counts.done > 0 && data.download_url);
    if (!download.hidden) download.href = data.download_url;
    const cancel = q(".batch-cancel");
    cancel.hidden = !ACTIVE.has(status);
    cancel.disabled = batch.cancelling;
    cancel.setAttribute("aria-label", `Cancel every job of batch ${batch.id.slice(0, 8)}`);
  }
}

// The jobs panel: a start form per job kind, the list of the user's jobs, and one live stream
// per active job. A finished job's row shows its result (results.js).
//
// A job's stream (/ws/jobs/{id}/) starts with a snapshot carrying the seq it reflects; each event
// after it has the next seq. After a dropped connection the stream reconnects with
// `?after=<last seq seen>`, so the server sends exactly the missed events, then live ones; an
// event at or below the last seq is ignored, so nothing is applied twice.
// The user feed (/ws/events/) only discovers jobs started elsewhere (another tab, the API), and
// moves the members of batches (batches.js), which have no stream of their own.

import { api } from "./api.js";
import { el, clock, duration, notify } from "./ui.js";
import { StartForms } from "./start-forms.js";
import { downloadText, resultNodes, subjectText } from "./results.js";
import { BatchList } from "./batches.js";
import { takeInOrder } from "./feed-order.js";

const ACTIVE = new Set(["scheduled", "queued", "running"]);
// A finished job's Delete button asks once more, this long, before it deletes.
const CONFIRM_MS = 5000;
const TERMINAL_EVENTS = new Set(["job.done", "job.failed", "job.cancelled"]);
const STATUS_TEXT = {
  scheduled: "Scheduled",
  queued: "Queued",
  running: "Running",
  done: "Done",
  failed: "Failed",
  cancelled: "Cancelled",
};

export class JobsPanel {
  constructor({ hub, kinds, urls, username, root }) {
    this.hub = hub;
    this.username = username;
    this.kinds = new Map(kinds.map((k) => [k.kind, k]));
    this.urls = urls;
    this.list = root.querySelector("#job-list");
    this.empty = root.querySelector("#jobs-empty");
    this.more = root.querySelector("#jobs-more");
    this.announcer = root.querySelector("#jobs-announcer");
    this.jobs = new Map();
    this.pending = new Map();
    this.batches = new BatchList({ hub, url: urls.batches, list: this.list, panel: this });
    this.forms = new StartForms({
      kinds,
      url: urls.jobs,
      root: root.querySelector("#kind-forms"),
      // Several images in one form start a batch (its answer has `members`).
      onStarted: (started) => (started.members ? this.batches.upsert(started) : this.upsert(started)),
      onRefused: () => this.load(),
    });
    setInterval(() => this.tick(), 1000);
  }

  async load() {
    await this.batches.load(); // first, so their members' rows go inside them
    try {
      const page = await api.get(this.urls.jobs);
      this.forgetMissing(page);
      // A batch member's row may be older than its last event on the feed (a read that began
      // before it): upsertMember keeps the newer of the two, by seq, as for batch snapshots.
      for (const job of page.results.slice().reverse()) {
        if (job.batch && this.jobs.has(job.id)) this.upsertMember(job);
        else this.upsert(job);
      }
      const older = page.count - page.results.length;
      this.more.hidden = older <= 0;
      this.more.textContent = `${older} older ${older === 1 ? "job is" : "jobs are"} not listed; see ${this.urls.jobs}.`;
    } catch (error) {
      notify(`Couldn't load your jobs: ${error.message}`, "error");
    }
    this.renderEmpty();
  }

  async cancel(id) {
    const job = this.jobs.get(id);
    job.cancelling = true;
    this.render(job);
    try {
      this.upsert(await api.post(`${this.urls.jobs}${id}/cancel/`));
    } catch (error) {
      job.cancelling = false;
      this.render(job);
      notify(`Couldn't cancel: ${error.message}`, error.status === 409 ? "info" : "error");
    }
  }

  // Delete a finished job: the first click turns the button into "Confirm delete" for a few
  // seconds, the second one deletes. A 404 means it is gone already (deleted in another tab).
  async remove(id) {
    const job = this.jobs.get(id);
    if (!job || job.deleting) return;
    if (!job.confirmingDelete) {
      job.confirmingDelete = true;
      job.deleteError = "";
      clearTimeout(job.confirmTimer);
      job.confirmTimer = setTimeout(() => {
        job.confirmingDelete = false;
        if (this.jobs.get(id) === job) this.render(job);
      }, CONFIRM_MS);
      this.render(job);
      this.announcer.textContent = `Press again to delete job ${id.slice(0, 8)}.`;
      return;
    }
    clearTimeout(job.confirmTimer);
    job.confirmingDelete = false;
    job.deleting = true;
    this.render(job);
    try {
      await api.delete(`${this.urls.jobs}${id}/`);
    } catch (error) {
      if (error.status !== 404) {
        job.deleting = false;
        job.deleteError = error.message;
        this.render(job);
        return;
      }
    }
    this.forget(job);
    this.announcer.textContent = `Job ${id.slice(0, 8)} deleted.`;
  }

  // Take a job off the page (deleted here or elsewhere).
  forget(job) {
    if (this.jobs.get(job.id) !== job) return;
    clearTimeout(job.confirmTimer);
    this.stopWatching(job);
    this.jobs.delete(job.id);
    job.row.remove();
    this.renderEmpty();
  }

  // A refreshed first page of the list: a finished job this page shows that falls between the
  // page's oldest and newest job but is not on it was deleted elsewhere (another tab, the API,
  // the retention sweep). Jobs newer than the page (started meanwhile) and older ones are kept.
  forgetMissing(page) {
    const created = page.results.map((job) => Date.parse(job.created)).filter((t) => !Number.isNaN(t));
    if (created.length === 0) return;
    const listed = new Set(page.results.map((job) => job.id));
    const newest = Math.max(...created);
    const oldest = page.count > page.results.length ? Math.min(...created) : -Infinity;
    for (const job of [...this.jobs.values()]) {
      const at = Date.parse(job.data?.created);
      if (listed.has(job.id) || ACTIVE.has(job.data?.status) || job.deleting || Number.isNaN(at)) continue;
      if (at >= oldest && at <= newest) this.forget(job);
    }
  }

  // A job from REST. Once its stream has said anything, the stream alone moves a job on: a
  // REST answer may be older than the last event (a cancel's 202 says "running" while the
  // job.cancelled event may already be here), and a finished job never changes again.
  upsert(data) {
    let job = this.jobs.get(data.id);
    if (!job) {
      job = {
        id: data.id, lastSeq: null, stream: null, cancelling: false, deleting: false, confirmingDelete: false,
        deleteError: "", row: this.createRow(data.id),
      };
      this.jobs.set(data.id, job);
      this.list.prepend(job.row);
      this.renderEmpty();
    }
    if (job.lastSeq === null && !(job.data && !ACTIVE.has(job.data.status))) {
      job.data = { ...job.data, ...data };
      this.render(job);
    }
    if (job.data.batch) this.batches.adopt(job);
    else if (ACTIVE.has(job.data.status) && !job.stream) this.watch(job);
    return job;
  }

  // A batch member as its batch's snapshot shows it: its row, read when the batch socket opened.
  // The user feed may have moved the member on since (the snapshot can arrive after the member's
  // own events): a snapshot behind the last feed event seen is dropped, or it would set an ended
  // member back to "queued" for good. `seq` is the member's stream seq the row stands for.
  upsertMember({ seq, ...data }) {
    const known = this.jobs.get(data.id);
    if (known && known.feedSeq !== undefined && typeof seq === "number" && seq < known.feedSeq) return;
    const job = this.upsert(data);
    job.data = { ...job.data, ...data };
    if (typeof seq === "number") job.feedSeq = Math.max(job.feedSeq ?? 0, seq);
    this.render(job);
  }

  watch(job) {
    job.stream = this.hub.open({
      label: `job ${job.id.slice(0, 8)}`,
      path: () => `/ws/jobs/${job.id}/${job.lastSeq === null ? "" : `?after=${job.lastSeq}`}`,
      onFrame: (frame, socket) => this.onJobFrame(job, frame, socket),
      onFinal: (code, detail) => {
        job.streamError = detail;
        this.stopWatching(job);
        this.render(job);
      },
    });
  }

  stopWatching(job) {
    if (job.stream) job.stream.close();
    job.stream = null;
  }

  onJobFrame(job, frame, socket) {
    if (frame.job !== job.id || typeof frame.seq !== "number") return;
    if (frame.type === "job.snapshot") {
      job.lastSeq = frame.seq;
      job.data = { ...job.data, ...frame, id: job.id };
    } else {
      if (!takeInOrder(job, frame, socket)) return;
      this.apply(job, frame);
    }
    if (!ACTIVE.has(job.data.status)) {
      job.cancelling = false;
      this.stopWatching(job);
    }
    this.render(job);
  }

  apply(job, frame) {
    const update = { status: frame.status, progress: frame.progress, message: frame.message };
    if (frame.type === "job.started") update.started = frame.ts;
    if (TERMINAL_EVENTS.has(frame.type)) update.finished = frame.ts;
    if (frame.result_url) update.result_url = frame.result_url;
    if (frame.result !== undefined) update.result = frame.result;
    if (frame.error) update.error = frame.error;
    job.data = { ...job.data, ...update };
  }

  // An event from the user feed: jobs this page doesn't know yet, batches, and batch members
  // (the feed is their only live source; a member's events come in order from its one run).
  onFeedEvent(frame) {
    if (frame.batch) {
      this.batches.onFeedEvent(frame);
      return;
    }
    const member = frame.job && this.jobs.get(frame.job);
    if (member && member.data.batch && typeof frame.seq === "number") {
      if (member.feedSeq !== undefined && frame.seq <= member.feedSeq) return;
      member.feedSeq = frame.seq;
      if (!ACTIVE.has(member.data.status) && member.data.finished) return; // ended: never changes again
      this.apply(member, frame);
      this.render(member);
      return;
    }
    if (!frame.job || this.jobs.has(frame.job) || this.pending.has(frame.job)) return;
    const fetching = api
      .get(`${this.urls.jobs}${frame.job}/`)
      .then((data) => this.upsert(data))
      .catch(() => {})
      .finally(() => this.pending.delete(frame.job));
    this.pending.set(frame.job, fetching);
  }

  createRow(id) {
    const short = id.slice(0, 8);
    const bar = el("div", { class: "bar" });
    const row = el("li", { class: "job", "data-job-id": id }, [
      el("div", { class: "job-head" }, [
        el("span", { class: "job-kind" }),
        el("span", { class: "badge job-status" }),
        el("span", { class: "job-subject" }),
        el("span", { class: "job-elapsed", title: "Elapsed time" }),
      ]),
      el("div", { class: "job-progress" }, [
        el("div", {
          class: "progress",
          role: "progressbar",
          "aria-valuemin": "0",
          "aria-valuemax": "100",
          "aria-valuenow": "0",
          "aria-label": `Progress of job ${short}`,
        }, [bar]),
        el("span", { class: "job-percent" }),
      ]),
      el("p", { class: "job-error", role: "alert", hidden: "" }),
      el("div", { class: "job-result", hidden: "" }),
      el("div", { class: "job-foot" }, [
        el("div", { class: "job-text" }, [el("p", { class: "job-message" }), el("p", { class: "job-meta" })]),
        el("div", { class: "job-actions" }, [
          el("a", { class: "btn btn-small btn-success job-download", hidden: "", download: "" }, ["Download"]),
          el("button", { type: "button", class: "btn btn-small btn-danger job-cancel", hidden: "" }, ["Cancel"]),
          el("button", { type: "button", class: "btn btn-small btn-danger job-delete", hidden: "" }, ["Delete"]),
        ]),
      ]),
      el("p", { class: "job-action-error", role: "alert", hidden: "" }),
    ]);
    row.querySelector(".job-cancel").addEventListener("click", () => this.cancel(id));
    const remove = row.querySelector(".job-delete");
    remove.addEventListener("click", () => this.remove(id));
    remove.addEventListener("keydown", (event) => {
      const job = this.jobs.get(id);
      if (event.key !== "Escape" || !job?.confirmingDelete) return;
      clearTimeout(job.confirmTimer);
      job.confirmingDelete = false;
      this.render(job);
    });
    return row;
  }

  render(job) {
    const { row, data } = job;
    const q = (selector) => row.querySelector(selector);
    const status = data.status || "queued";
    const progress = Math.max(0, Math.min(100, data.progress || 0));
    const label = this.kinds.get(data.kind)?.label || data.kind || "Job";
    // Screen readers hear when a job changes status, not every step of its progress.
    if (row.dataset.status && row.dataset.status !== status) {
      this.announcer.textContent = `${label} ${job.id.slice(0, 8)}: ${STATUS_TEXT[status] || status}.`;
    }
    row.dataset.status = status;
    row.dataset.seq = job.lastSeq === null ? "" : String(job.lastSeq);
    q(".job-kind").textContent = label;
    q(".job-status").textContent = job.cancelling && ACTIVE.has(status) ? "Cancelling…" : STATUS_TEXT[status] || status;
    const bar = q(".progress");
    bar.setAttribute("aria-valuenow", String(progress));
    bar.querySelector(".bar").style.width = `${progress}%`;
    q(".job-percent").textContent = `${progress}%`;
    // A failed job's error box says it all; its message is just "Failed".
    q(".job-message").textContent = status === "failed" ? "" : data.message || "";
    const error = q(".job-error");
    const errorText = status === "failed" ? data.error || "The job failed." : job.streamError || "";
    error.textContent = errorText;
    error.hidden = !errorText;
    const subject = subjectText(data.kind, data.params);
    q(".job-subject").textContent = subject;
    q(".job-subject").title = subject;
    this.renderResult(job, status);
    const download = q(".job-download");
    download.hidden = !(status === "done" && data.result_url);
    if (!download.hidden) {
      const text = downloadText(data.kind);
      download.href = data.result_url;
      download.textContent = text;
      download.setAttribute("aria-label", `${text} of job ${job.id.slice(0, 8)}`);
    }
    const cancel = q(".job-cancel");
    cancel.hidden = !ACTIVE.has(status);
    cancel.disabled = job.cancelling;
    cancel.setAttribute("aria-label", `Cancel job ${job.id.slice(0, 8)}`);
    this.renderDelete(job, status);
    const created = data.created ? `created ${clock(data.created)}` : "";
    // Staff see everyone's jobs: say whose.
    const owner = data.owner && data.owner !== this.username ? `by ${data.owner}` : "";
    q(".job-meta").textContent = [`#${job.id.slice(0, 8)}`, created, owner].filter(Boolean).join(" · ");
    this.renderElapsed(job);
  }

  renderDelete(job, status) {
    const short = job.id.slice(0, 8);
    const button = job.row.querySelector(".job-delete");
    button.hidden = ACTIVE.has(status);
    button.disabled = job.deleting;
    button.classList.toggle("btn-confirm", job.confirmingDelete);
    const text = job.deleting ? "Deleting…" : job.confirmingDelete ? "Confirm delete" : "Delete";
    button.textContent = text;
    button.setAttribute("aria-label", `${text} job ${short}`);
    const error = job.row.querySelector(".job-action-error");
    error.textContent = job.deleteError ? `Couldn't delete: ${job.deleteError}` : "";
    error.hidden = !job.deleteError;
  }

  // A finished job's result, drawn once. The job's stream may not carry it (a snapshot of a job
  // that finished before the page watched it): then it is fetched once from the job's URL.
  renderResult(job, status) {
    const box = job.row.querySelector(".job-result");
    const result = status === "done" ? job.data.result : null;
    if (status === "done" && (result === null || result === undefined) && !job.resultRequested) {
      job.resultRequested = true;
      api.get(`${this.urls.jobs}${job.id}/`)
        .then((data) => {
          job.data = { ...job.data, result: data.result, params: data.params || job.data.params };
          if (data.result_url) job.data.result_url = data.result_url;
          if (this.jobs.get(job.id) === job) this.render(job);
        })
        .catch((error) => {
          if (error.status === 404) this.forget(job); // deleted elsewhere meanwhile
        });
    }
    if (job.shownResult === result) return;
    job.shownResult = result;
    const nodes = resultNodes(job, result, { jobsUrl: this.urls.jobs });
    box.replaceChildren(...nodes);
    box.hidden = nodes.length === 0;
    box.dataset.kind = job.data.kind || "";
  }

  renderElapsed(job) {
    const { data } = job;
    const from = data.started || data.created;
    const node = job.row.querySelector(".job-elapsed");
    if (!from) {
      node.textContent = "";
      return;
    }
    const end = data.finished ? Date.parse(data.finished) : Date.now();
    const label = data.started ? "" : "waiting ";
    node.textContent = `${label}${duration(end - Date.parse(from))}`;
  }

  tick() {
    for (const job of this.jobs.values()) {
      if (ACTIVE.has(job.data.status)) this.renderElapsed(job);
    }
  }

  renderEmpty() {
    this.empty.hidden = this.jobs.size > 0;
  }
}

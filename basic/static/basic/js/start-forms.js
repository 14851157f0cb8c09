// The start controls of the jobs panel: one small form per job kind, drawn from `config.kinds`
// (basic/api/console.py describes each kind's parameters from the registry). Every kind starts with
// POST /api/jobs/: JSON {"kind", "params"}, or a multipart form (`kind` plus one field per
// parameter) for a kind that takes an upload. The server validates; its 400 answers show next
// to their fields, and a refusal (429, 503) as an alert at the top of the page.

import { api, ApiError } from "./api.js";
import { el, notify, showFieldErrors } from "./ui.js";

// What the thumbnails kind (and any kind whose upload is named `image`) accepts, unless the
// kind's description names its own `accept`.
const IMAGE_TYPES = "image/jpeg,image/png,image/webp,image/gif";

const isObject = (value) => value !== null && typeof value === "object" && !Array.isArray(value);

// A serializer's messages, whatever their nesting, as one line.
function messageText(messages) {
  if (Array.isArray(messages)) return messages.map(messageText).join(" ");
  if (isObject(messages)) return Object.values(messages).map(messageText).join(" ");
  return String(messages);
}

export class StartForms {
  constructor({ kinds, url, root, onStarted, onRefused }) {
    this.url = url;
    this.root = root;
    this.onStarted = onStarted;
    this.onRefused = onRefused;
    this.batchUrls = new Map(kinds.filter((kind) => kind.batch_url).map((kind) => [`start-${kind.kind}`, kind.batch_url]));
    this.forms = kinds.map((kind) => this.build(kind));
    root.replaceChildren(...this.forms.map((form) => form.node));
    if (!kinds.length) root.append(el("p", { class: "muted" }, ["No job kinds are available."]));
  }

  build(kind) {
    const id = `start-${kind.kind}`;
    const heading = el("h3", { class: "kind-title", id: `${id}-title` }, [kind.label]);
    const fields = kind.fields.map((field) => this.buildField(id, field));
    const formError = el("p", { class: "field-error form-error", id: `${id}-error`, hidden: true });
    const submit = el("button", { type: "submit", class: "btn btn-primary kind-start" }, [
      el("span", { "aria-hidden": "true" }, ["▶"]),
      ` Start ${kind.label.toLowerCase()}`,
    ]);
    const node = el("form", {
      class: "kind-form",
      id,
      "data-kind": kind.kind,
      "aria-labelledby": heading.id,
      "aria-describedby": `${id}-error`,
      novalidate: true,
    }, [
      el("div", { class: "kind-head" }, [
        heading,
        kind.description ? el("p", { class: "kind-desc" }, [kind.description]) : "",
      ]),
      ...fields.map((field) => field.node),
      formError,
      el("div", { class: "kind-actions" }, [submit]),
    ]);
    const form = { kind, node, submit, formError, fields, errors: {} };
    for (const field of fields) form.errors[field.spec.name] = field.error;
    node.addEventListener("submit", (event) => {
      event.preventDefault();
      this.start(form);
    });
    return form;
  }

  buildField(formId, spec) {
    const id = `${formId}-${spec.name}`;
    const help = spec.help ? el("p", { class: "hint", id: `${id}-help` }, [spec.help]) : "";
    const error = el("p", { class: "field-error", id: `${id}-error`, hidden: true });
    const describedBy = [spec.help ? `${id}-help` : "", `${id}-error`].filter(Boolean).join(" ");
    const common = { id, name: spec.name, "aria-describedby": describedBy };
    let input;
    let node;
    if (spec.type === "checkbox") {
      input = el("input", { ...common, type: "checkbox", checked: spec.default === true });
      node = el("div", { class: "field field-check" }, [
        el("label", { class: "check", for: id }, [input, ` ${spec.label}`]), help, error,
      ]);
      return { spec, input, error, node };
    }
    if (spec.type === "file") {
      const accept = spec.accept || (spec.name === "image" ? IMAGE_TYPES : null);
      // Several files start a batch at the kind's own route (one job each), where it has one.
      input = el("input", { ...common, type: "file", accept, multiple: this.batchUrls.has(formId) });
    } else if (spec.type === "select") {
      input = el("select", common, (spec.choices || []).map(([value, text]) =>
        el("option", { value, selected: String(spec.default) === value }, [text])));
    } else if (spec.type === "number") {
      input = el("input", { ...common, type: "number", inputmode: "numeric", min: spec.min, max: spec.max });
    } else if (spec.type === "url") {
      input = el("input", {
        ...common, type: "url", inputmode: "url", autocomplete: "off", spellcheck: "false",
        placeholder: "https://example.com/",
      });
    } else {
      input = el("input", { ...common, type: "text", autocomplete: "off", spellcheck: "false" });
    }
    if (spec.default !== undefined && spec.default !== null && spec.type !== "file" && spec.type !== "select") {
      input.value = String(spec.default);
      input.defaultValue = String(spec.default);
    }
    node = el("div", { class: `field field-${spec.type}` }, [el("label", { for: id }, [spec.label]), input, help, error]);
    return { spec, input, error, node };
  }

  // What the form sends: sent as typed, so the server is the one place that decides what is
  // valid. An empty optional field is left out, so the server's default applies.
  body(form) {
    const { kind } = form;
    if (kind.multipart) {
      const data = new FormData();
      data.append("kind", kind.kind);
      for (const { spec, input } of form.fields) {
        if (spec.type === "file") {
          for (const file of input.files) data.append(spec.name, file);
        } else if (spec.type === "checkbox") {
          data.append(spec.name, input.checked ? "true" : "false");
        } else if (input.value !== "" || spec.required) {
          data.append(spec.name, input.value);
        }
      }
      return data;
    }
    const params = {};
    for (const { spec, input } of form.fields) {
      if (spec.type === "checkbox") {
        params[spec.name] = input.checked;
      } else if (input.value === "" && !spec.required) {
        continue;
      } else if (spec.type === "number" && input.value !== "") {
        params[spec.name] = Number(input.value);
      } else {
        params[spec.name] = input.value;
      }
    }
    return { kind: kind.kind, params };
  }

  async start(form) {
    form.submit.disabled = true;
    try {
      const body = this.body(form);
      const files = form.fields.filter(({ spec }) => spec.type === "file").map(({ input }) => input.files.length);
      const url = Math.max(0, ...files) > 1 ? form.kind.batch_url : this.url;
      const job = await api.post(url, body);
      this.showErrors(form, {});
      this.onStarted(job);
    } catch (error) {
      const errors = error instanceof ApiError ? error.fields : {};
      if (!this.showErrors(form, errors)) {
        notify(`${form.kind.label} not started: ${error.message}`, "error");
        // A job the broker refused is kept as failed: show it.
        if (error instanceof ApiError && error.status === 503) this.onRefused();
      }
    } finally {
      form.submit.disabled = false;
    }
  }

  // A 400 names bad parameters under "params" (shown next to their fields), and anything else
  // (an unknown kind, a malformed request) at the top level: that goes under the form. A batch's
  // 400 names each bad file's job by its number under "jobs": shown as one line per job.
  showErrors(form, errors) {
    if (isObject(errors.jobs)) {
      const lines = Object.entries(errors.jobs).map(([index, messages]) => `File ${Number(index) + 1}: ${messageText(messages)}`);
      errors = { ...errors, jobs: lines };
    }
    const fieldErrors = isObject(errors.params) ? errors.params : {};
    const known = {};
    const other = [];
    for (const [name, messages] of Object.entries(fieldErrors)) {
      if (name in form.errors) known[name] = messageText(messages);
      else other.push(messageText(messages));
    }
    for (const [name, messages] of Object.entries(errors)) {
      if (name !== "params" || !isObject(messages)) other.push(messageText(messages));
    }
    showFieldErrors(known, form.errors);
    form.formError.textContent = other.join(" ");
    form.formError.hidden = other.length === 0;
    const first = form.fields.find(({ spec }) => spec.name in known);
    if (first) first.input.focus();
    else if (other.length) form.submit.focus();
    return Object.keys(known).length > 0 || other.length > 0;
  }
}

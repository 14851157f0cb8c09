// The students panel: add one (server validation shown inline) or generate many at random.

import { api } from "./api.js";
import { el, notify, showFieldErrors, clearFieldErrors } from "./ui.js";

const NEWEST = 5;
const number = new Intl.NumberFormat();

export class StudentsPanel {
  constructor({ urls, root }) {
    this.urls = urls;
    this.total = root.querySelector("#student-total");
    this.list = root.querySelector("#student-list");
    this.addForm = root.querySelector("#student-form");
    this.addResult = root.querySelector("#student-result");
    this.addErrors = {
      name: root.querySelector("#student-name-error"),
      age: root.querySelector("#student-age-error"),
    };
    this.addFormError = root.querySelector("#student-form-error");
    this.generateForm = root.querySelector("#generate-form");
    this.generateResult = root.querySelector("#generate-result");
    this.generateErrors = { count: root.querySelector("#generate-count-error") };
    this.addForm.addEventListener("submit", (event) => {
      event.preventDefault();
      this.add();
    });
    this.generateForm.addEventListener("submit", (event) => {
      event.preventDefault();
      this.generate();
    });
  }

  async add() {
    const form = this.addForm;
    const name = form.elements.name.value.trim();
    const age = form.elements.age.value.trim();
    // Sent as typed: the server is the one place that decides what is valid.
    const body = { name };
    if (age !== "") body.age = Number(age);
    this.addResult.textContent = "";
    const submit = form.querySelector("button[type=submit]");
    submit.disabled = true;
    try {
      const student = await api.post(this.urls.students, body);
      clearFieldErrors(this.addErrors, this.addFormError);
      form.reset();
      this.addResult.textContent = `Added ${student.name}, ${student.age}.`;
      form.elements.name.focus();
      this.refresh();
    } catch (error) {
      if (!showFieldErrors(error.fields, this.addErrors, this.addFormError)) {
        this.addFormError.textContent = error.message;
        this.addFormError.hidden = false;
      }
    } finally {
      submit.disabled = false;
    }
  }

  async generate() {
    const form = this.generateForm;
    const raw = form.elements.count.value.trim();
    const submit = form.querySelector("button[type=submit]");
    submit.disabled = true;
    this.generateResult.textContent = "Generating…";
    try {
      const result = await api.post(this.urls.generate, raw === "" ? {} : { count: Number(raw) });
      clearFieldErrors(this.generateErrors);
      this.generateResult.textContent =
        `Created ${number.format(result.created)} students; ${number.format(result.total)} in total.`;
      this.showTotal(result.total);
      this.refresh();
    } catch (error) {
      this.generateResult.textContent = "";
      if (!showFieldErrors(error.fields, this.generateErrors)) notify(`Couldn't generate: ${error.message}`, "error");
    } finally {
      submit.disabled = false;
    }
  }

  showTotal(total) {
    this.total.textContent = number.format(total);
    this.total.dataset.count = String(total);
  }

  async refresh() {
    try {
      const first = await api.get(`${this.urls.students}?limit=1`);
      const offset = Math.max(0, first.count - NEWEST);
      const page = await api.get(`${this.urls.students}?limit=${NEWEST}&offset=${offset}`);
      this.showTotal(page.count);
      this.list.replaceChildren(
        ...page.results.reverse().map((s) =>
          el("li", {}, [el("span", { class: "student-name" }, [s.name]), el("span", { class: "student-age" }, [`${s.age}`])])),
      );
      if (!page.results.length) this.list.append(el("li", { class: "muted" }, ["No students yet."]));
    } catch (error) {
      notify(`Couldn't load students: ${error.message}`, "error");
    }
  }
}

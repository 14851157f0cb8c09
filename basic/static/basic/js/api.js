// REST calls with the session cookie; writes carry the CSRF token Django set in `csrftoken`.
// A body is sent as JSON, or as multipart when it is a FormData (file uploads).

export class ApiError extends Error {
  constructor(status, body) {
    super(ApiError.describe(status, body));
    this.status = status;
    this.body = body || {};
  }

  static describe(status, body) {
    if (body && typeof body.detail === "string") return body.detail;
    if (status === 0) return "The server can't be reached. Check your connection and try again.";
    if (status === 429) return "Too many requests; wait a moment and try again.";
    if (status === 503) return "A backing service is unavailable; try again shortly.";
    if (status >= 500) return "Something went wrong on the server; try again.";
    return `The server refused that (${status}).`;
  }

  // Field errors of a 400, e.g. {"name": ["This field may not be blank."]}.
  get fields() {
    return this.status === 400 ? this.body : {};
  }
}

function csrfToken() {
  const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  return match ? decodeURIComponent(match[1]) : "";
}

export async function request(method, url, body) {
  const headers = { Accept: "application/json" };
  const options = { method, headers, credentials: "same-origin" };
  if (method !== "GET") headers["X-CSRFToken"] = csrfToken();
  if (body instanceof FormData) {
    options.body = body; // the browser sets the multipart Content-Type with its boundary
  } else if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(url, options);
  } catch {
    throw new ApiError(0, null);
  }
  if (response.redirected && new URL(response.url).pathname.startsWith("/accounts/login/")) {
    throw new ApiError(401, { detail: "You are signed out. Reload the page to sign in again." });
  }
  let data = null;
  const type = response.headers.get("Content-Type") || "";
  if (type.includes("json")) data = await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

export const api = {
  get: (url) => request("GET", url),
  post: (url, body) => request("POST", url, body),
  delete: (url) => request("DELETE", url),
};

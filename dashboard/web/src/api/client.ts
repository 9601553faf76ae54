// The one place the dashboard talks HTTP: JSON in and out, the token in the Authorization header,
// errors as ApiError with the server's code, message and field.

import { authHeaders, setAuthNeeded } from "./auth";

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly field?: string,
  ) {
    super(message);
    this.name = "ApiError";
  }

  /** The server does not have this route (an older back end): pages degrade instead of failing. */
  get missingRoute(): boolean {
    return this.status === 404 && this.code === "ROUTE_NOT_FOUND";
  }
}

export type Fetch = typeof fetch;
let fetchImpl: Fetch = (...args) => fetch(...args);

/** For tests: the fetch every request goes through. */
export function setFetch(f: Fetch): void {
  fetchImpl = f;
}

export type Query = Record<string, string | number | boolean | string[] | null | undefined>;

/** A query string from parameters; empty and null values are left out, arrays repeat the key. */
export function queryString(params: Query): string {
  const q = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value === undefined || value === null || value === "") continue;
    if (Array.isArray(value)) {
      for (const v of value) if (v !== "") q.append(key, v);
    } else q.append(key, String(value));
  }
  const s = q.toString();
  return s ? `?${s}` : "";
}

async function errorOf(response: Response): Promise<ApiError> {
  let code = `HTTP_${response.status}`;
  let message = response.statusText || `the server answered ${response.status}`;
  let field: string | undefined;
  try {
    const body = (await response.json()) as { error?: { code?: string; message?: string; field?: string } };
    if (body.error) {
      code = body.error.code ?? code;
      message = body.error.message ?? message;
      field = body.error.field;
    }
  } catch {
    // not JSON (a proxy's page): keep the status line
  }
  return new ApiError(response.status, code, message, field);
}

/** One API request. :throws ApiError: any answer but 2xx (401 also shows the login screen). */
export async function request<T>(method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<T> {
  const headers: Record<string, string> = { Accept: "application/json", ...authHeaders() };
  const init: RequestInit = { method, headers };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  if (signal) init.signal = signal;
  let response: Response;
  try {
    response = await fetchImpl(path, init);
  } catch (err) {
    if (err instanceof DOMException && err.name === "AbortError") throw err;
    throw new ApiError(0, "NETWORK", "the server cannot be reached");
  }
  if (!response.ok) {
    const error = await errorOf(response);
    if (response.status === 401) setAuthNeeded(true);
    throw error;
  }
  return (await response.json()) as T;
}

export const get = <T>(path: string, params: Query = {}, signal?: AbortSignal) =>
  request<T>("GET", path + queryString(params), undefined, signal);
export const post = <T>(path: string, body?: unknown) => request<T>("POST", path, body);
export const del = <T>(path: string) => request<T>("DELETE", path);

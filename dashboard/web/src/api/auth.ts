// The API token of a server started with --auth-token. It lives in session storage (gone when the
// tab closes) and travels only in the Authorization header: never in a URL, never in a log.

const KEY = "spitfire.token";
type Listener = (needed: boolean) => void;

let needed = false;
const listeners = new Set<Listener>();

function storage(): Storage | null {
  try {
    return typeof sessionStorage === "undefined" ? null : sessionStorage;
  } catch {
    return null; // storage disabled: the token lives for this page only
  }
}

let memoryToken: string | null = null;

export function getToken(): string | null {
  return storage()?.getItem(KEY) ?? memoryToken;
}

export function setToken(token: string | null): void {
  memoryToken = token;
  const s = storage();
  if (s) {
    if (token === null) s.removeItem(KEY);
    else s.setItem(KEY, token);
  }
}

/** The headers that authenticate a request (none without a token). */
export function authHeaders(): Record<string, string> {
  const token = getToken();
  return token ? { Authorization: `Bearer ${token}` } : {};
}

/** Called when the server answered 401: the app shows the login screen. */
export function setAuthNeeded(value: boolean): void {
  if (needed === value) return;
  needed = value;
  for (const l of listeners) l(value);
}

export function isAuthNeeded(): boolean {
  return needed;
}

export function onAuthNeeded(listener: Listener): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

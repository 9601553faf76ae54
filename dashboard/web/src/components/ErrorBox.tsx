import { ApiError } from "../api/client";

/** An error of a request, said plainly (the server's message names the field at fault). */
export function ErrorBox({ error }: { error: unknown }) {
  if (!error) return null;
  const message = error instanceof Error ? error.message : String(error);
  const code = error instanceof ApiError ? error.code : null;
  return (
    <div className="error-box" role="alert">
      {code ? <strong>{code}: </strong> : null}
      {message}
    </div>
  );
}

export function Empty({ children }: { children: React.ReactNode }) {
  return <div className="empty">{children}</div>;
}

export function Loading() {
  return <div className="loading">Loading…</div>;
}

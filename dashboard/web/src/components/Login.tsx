import { useState } from "react";
import { setToken } from "../api/auth";
import { ApiError } from "../api/client";
import { fetchStats } from "../api/endpoints";

/** The login screen of a server started with --auth-token: the token is checked against the API,
 * then kept in session storage (it travels only in the Authorization header). */
export function Login({ onDone }: { onDone: () => void }) {
  const [token, setValue] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const submit = async () => {
    setBusy(true);
    setError(null);
    setToken(token);
    try {
      await fetchStats();
      onDone();
    } catch (err) {
      setToken(null);
      setError(err instanceof ApiError && err.status === 401 ? "That token is not the server's --auth-token." : String(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <main className="login">
      <form
        className="card login-card"
        onSubmit={(e) => {
          e.preventDefault();
          void submit();
        }}
      >
        <h1>
          <span className="logo" aria-hidden="true" /> Spitfire
        </h1>
        <p className="muted">This server asks for its access token (--auth-token).</p>
        <label htmlFor="token">Token</label>
        <input
          id="token"
          name="token"
          type="password"
          autoComplete="current-password"
          autoFocus
          value={token}
          onChange={(e) => setValue(e.target.value)}
        />
        {error ? (
          <div className="error-box" role="alert">
            {error}
          </div>
        ) : null}
        <button className="btn primary" type="submit" disabled={!token || busy}>
          {busy ? "Signing in…" : "Sign in"}
        </button>
      </form>
    </main>
  );
}

import { NavLink, Outlet } from "react-router";
import { getToken, setToken } from "../api/auth";
import { useStats } from "../api/queries";
import type { ThemeMode } from "../theme";
import { count } from "../utils/format";
import { ConnectionIndicator } from "./ConnectionIndicator";
import { SearchBox } from "./SearchBox";

interface Props {
  theme: { mode: ThemeMode; next: () => void };
}

const THEME_LABEL: Record<ThemeMode, string> = { system: "◐ auto", light: "☀ light", dark: "☾ dark" };

function Badge({ n, kind }: { n: number | undefined; kind: string }) {
  if (!n) return null;
  return <span className={`nav-badge ${kind}`}>{count(n)}</span>;
}

/** The shell of every page: navigation with live counts, search, connection, theme. */
export function Layout({ theme }: Props) {
  const { data: stats } = useStats();
  const c = stats?.counts ?? {};
  const link = ({ isActive }: { isActive: boolean }) => (isActive ? "active" : "");
  return (
    <div className="shell">
      <a className="skip" href="#main">
        Skip to content
      </a>
      <header className="topbar">
        <NavLink to="/" className="brand" end>
          <span className="logo" aria-hidden="true" />
          Spitfire
        </NavLink>
        <nav aria-label="Main">
          <NavLink to="/" end className={link}>
            Overview
          </NavLink>
          <NavLink to="/queues" className={link}>
            Queues
          </NavLink>
          <NavLink to="/jobs" className={link}>
            Jobs <Badge n={c.enqueued} kind="info" />
            <Badge n={c.dead} kind="danger" />
          </NavLink>
          <NavLink to="/recurring" className={link}>
            Recurring
          </NavLink>
          <NavLink to="/definitions" className={link}>
            Definitions
          </NavLink>
          <NavLink to="/workers" className={link}>
            Workers{" "}
            {stats ? <span className={`nav-badge ${stats.workers ? "" : "warning"}`}>{count(stats.workers)}</span> : null}
          </NavLink>
        </nav>
        <SearchBox />
        <div className="topbar-end">
          <ConnectionIndicator />
          <button type="button" className="btn small ghost" onClick={theme.next} title="Theme: auto (system), light, dark">
            {THEME_LABEL[theme.mode]}
          </button>
          {getToken() ? (
            <button
              type="button"
              className="btn small ghost"
              onClick={() => {
                setToken(null);
                window.location.reload();
              }}
            >
              Sign out
            </button>
          ) : null}
        </div>
      </header>
      <main id="main" className="content">
        <Outlet />
      </main>
      <footer className="footer muted">
        {stats?.server?.version ? `Spitfire ${stats.server.version}` : "Spitfire"}
        {stats?.server?.host ? ` · ${stats.server.host}` : ""}
        {stats?.server?.durability ? ` · durability ${stats.server.durability}` : ""}
        {" · times in "}
        {Intl.DateTimeFormat().resolvedOptions().timeZone}
      </footer>
    </div>
  );
}

import { Link } from "react-router";
import { useWorkers } from "../api/queries";
import { Empty, ErrorBox, Loading } from "../components/ErrorBox";
import { StateBadge } from "../components/StateBadge";
import { Time } from "../components/Time";
import { count } from "../utils/format";

export function WorkersPage() {
  const { data, error, isLoading } = useWorkers();
  const workers = data?.workers ?? [];
  const aborted = data?.possibly_aborted ?? [];
  return (
    <div className="page">
      <h1>Workers</h1>
      <ErrorBox error={error} />
      {isLoading ? <Loading /> : null}
      {data && !workers.length ? (
        <Empty>No worker is connected. Start one with <code>spitfire worker</code> or claim jobs over HTTP.</Empty>
      ) : null}
      {workers.length ? (
        <div className="table-wrap">
          <table className="table">
            <thead>
              <tr>
                <th>Worker</th>
                <th className="hide-sm">Host</th>
                <th className="hide-sm num">PID</th>
                <th>Queues</th>
                <th className="num hide-sm">Concurrency</th>
                <th className="num">In flight</th>
                <th>Last seen</th>
              </tr>
            </thead>
            <tbody>
              {workers.map((w) => (
                <tr key={w.id}>
                  <td>
                    <span className="mono">{w.name}</span> <span className="badge">{w.kind}</span>
                    {w.active ? null : <span className="badge paused">idle</span>}
                  </td>
                  <td className="hide-sm">{w.host ?? <span className="muted">not reported</span>}</td>
                  <td className="hide-sm num">{w.pid ?? "–"}</td>
                  <td>
                    {w.queues.map((q) => (
                      <Link key={q} to={`/queues/${encodeURIComponent(q)}`} className="tag">
                        {q}
                      </Link>
                    ))}
                  </td>
                  <td className="num hide-sm">{w.concurrency ?? "–"}</td>
                  <td className="num">{count(w.in_flight ?? w.jobs ?? 0)}</td>
                  <td>
                    <Time at={w.last_seen ?? w.connected_at} fallback="connected" />
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ) : null}
      <h2>Possibly aborted jobs</h2>
      <p className="muted">Running or reserved jobs whose worker is gone or stopped heartbeating. They are delivered again when their lease ends.</p>
      {aborted.length ? (
        <div className="table-wrap">
          <table className="table">
            <thead>
              <tr>
                <th>Job</th>
                <th>State</th>
                <th className="hide-sm">Worker</th>
                <th>Lease until</th>
              </tr>
            </thead>
            <tbody>
              {aborted.map((j) => (
                <tr key={j.id}>
                  <td>
                    <Link to={`/jobs/${encodeURIComponent(j.id)}`} className="mono" title={j.id}>
                      {j.id}
                    </Link>{" "}
                    {j.name}
                  </td>
                  <td>
                    <StateBadge state={j.state} />
                  </td>
                  <td className="hide-sm mono">{j.worker ?? "–"}</td>
                  <td>
                    <Time at={j.lease_until} />
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ) : (
        <Empty>None.</Empty>
      )}
    </div>
  );
}

import { Link } from "react-router";
import { useQueues, useStats, useWorkers } from "../api/queries";
import { JOB_STATES } from "../api/types";
import { HistoryChart, RealtimeChart } from "../components/Charts";
import { ErrorBox } from "../components/ErrorBox";
import { Time } from "../components/Time";
import { count, duration, rate } from "../utils/format";

export function OverviewPage() {
  const { data: stats, error } = useStats();
  const { data: queues } = useQueues();
  const { data: workers } = useWorkers();
  const throughput = (queues ?? []).reduce((s, q) => s + q.processed_per_s, 0);
  const servers = stats?.servers?.length ? stats.servers : stats?.server ? [stats.server] : [];
  return (
    <div className="page">
      <h1>Overview</h1>
      <ErrorBox error={error} />
      <div className="state-cards">
        {JOB_STATES.map((s) => (
          <Link key={s} to={`/jobs?state=${s}`} className={`state-card state-border-${s}`} data-testid={`count-${s}`}>
            <span className="state-card-n">{count(stats?.counts[s] ?? 0)}</span>
            <span className="state-card-label">{s}</span>
          </Link>
        ))}
      </div>
      <div className="grid2">
        <RealtimeChart />
        <HistoryChart />
      </div>
      <div className="grid3">
        <div className="card">
          <div className="card-head">
            <h2>Server{servers.length > 1 ? "s" : ""}</h2>
          </div>
          {servers.length ? (
            servers.map((s) => (
              <dl className="facts" key={s.id ?? s.host ?? "server"}>
                <dt>Host</dt>
                <dd>
                  {s.host ?? "–"}
                  {s.pid ? ` (pid ${s.pid})` : ""}
                </dd>
                <dt>Version</dt>
                <dd>{s.version ?? "–"}</dd>
                <dt>Started</dt>
                <dd>
                  <Time at={s.started_at} />
                </dd>
                <dt>Durability</dt>
                <dd>{s.durability ?? "–"}</dd>
                <dt>Listen</dt>
                <dd className="mono">{Array.isArray(s.listen) ? s.listen.join(", ") : (s.listen ?? "–")}</dd>
                <dt>Connections</dt>
                <dd>{count(stats?.connections)}</dd>
              </dl>
            ))
          ) : (
            <dl className="facts">
              <dt>Connections</dt>
              <dd>{count(stats?.connections)}</dd>
              <dt>Uptime</dt>
              <dd>{stats ? duration(stats.uptime) : "–"}</dd>
            </dl>
          )}
        </div>
        <div className="card">
          <div className="card-head">
            <h2>Workers</h2>
            <Link to="/workers">all</Link>
          </div>
          <dl className="facts">
            <dt>Online</dt>
            <dd data-testid="workers-online">{count(workers ? workers.workers.filter((w) => w.active).length : stats?.workers)}</dd>
            <dt>In flight</dt>
            <dd>{count((workers?.workers ?? []).reduce((s, w) => s + (w.in_flight ?? w.jobs ?? 0), 0))}</dd>
            <dt>Possibly aborted</dt>
            <dd className={workers?.possibly_aborted?.length ? "warn" : ""}>{count(workers?.possibly_aborted?.length ?? 0)}</dd>
          </dl>
        </div>
        <div className="card">
          <div className="card-head">
            <h2>Totals since start</h2>
          </div>
          <dl className="facts">
            <dt>Enqueued</dt>
            <dd>{count(stats?.totals.enqueued)}</dd>
            <dt>Succeeded</dt>
            <dd>{count(stats?.totals.succeeded)}</dd>
            <dt>Failed</dt>
            <dd>{count(stats?.totals.failed)}</dd>
            <dt>Processed now</dt>
            <dd>{rate(throughput)}/s</dd>
            <dt>Queues</dt>
            <dd>
              <Link to="/queues">{count(stats?.queues)}</Link>
            </dd>
          </dl>
        </div>
      </div>
    </div>
  );
}

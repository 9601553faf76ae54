import { Link } from "react-router";
import { useQueues } from "../api/queries";
import { Empty, ErrorBox, Loading } from "../components/ErrorBox";
import { count, duration, rate } from "../utils/format";

const COLUMNS = ["enqueued", "scheduled", "running", "retrying", "dead", "succeeded"] as const;

export function QueuesPage() {
  const { data: queues, error, isLoading } = useQueues();
  return (
    <div className="page">
      <h1>Queues</h1>
      <ErrorBox error={error} />
      {isLoading ? <Loading /> : null}
      {queues && !queues.length ? <Empty>No queues yet: the first enqueue to a name creates its queue.</Empty> : null}
      {queues?.length ? (
        <div className="table-wrap">
          <table className="table">
            <thead>
              <tr>
                <th>Queue</th>
                {COLUMNS.map((c) => (
                  <th key={c} className={`num ${c === "enqueued" || c === "dead" ? "" : "hide-sm"}`}>
                    {c}
                  </th>
                ))}
                <th className="num hide-sm">Latency</th>
                <th className="num hide-sm">In/s</th>
                <th className="num">Out/s</th>
                <th className="hide-sm">Durability</th>
              </tr>
            </thead>
            <tbody>
              {queues.map((q) => (
                <tr key={q.name} data-queue={q.name}>
                  <td>
                    <Link to={`/queues/${encodeURIComponent(q.name)}`}>{q.name}</Link>
                    {q.paused ? <span className="badge paused">paused</span> : null}
                  </td>
                  {COLUMNS.map((c) => (
                    <td key={c} className={`num ${c === "enqueued" || c === "dead" ? "" : "hide-sm"}`}>
                      {q.counts[c] ? (
                        <Link to={`/jobs?queue=${encodeURIComponent(q.name)}&state=${c}`}>{count(q.counts[c])}</Link>
                      ) : (
                        <span className="muted">0</span>
                      )}
                    </td>
                  ))}
                  <td className="num hide-sm">{q.latency ? duration(q.latency) : <span className="muted">–</span>}</td>
                  <td className="num hide-sm">{rate(q.enqueued_per_s)}</td>
                  <td className="num">{rate(q.processed_per_s)}</td>
                  <td className="hide-sm">{q.durability}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ) : null}
    </div>
  );
}

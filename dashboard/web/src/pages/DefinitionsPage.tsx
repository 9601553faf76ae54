import { useJobDefinitions } from "../api/queries";
import { Empty, ErrorBox, Loading } from "../components/ErrorBox";
import { JsonBlock } from "../components/JsonBlock";
import { Time } from "../components/Time";
import { argumentNames, describeDefaults } from "../utils/definitions";

export function DefinitionsPage() {
  const { data: definitions, error, isLoading } = useJobDefinitions();
  return (
    <div className="page">
      <h1>Job definitions</h1>
      <p className="muted">
        What workers registered for each job name: the defaults every enqueue of it gets (from the CLI, HTTP or any
        SDK) and, when validated, the schema its payloads must fit.
      </p>
      <ErrorBox error={error} />
      {isLoading ? <Loading /> : null}
      {definitions && !definitions.length ? (
        <Empty>
          No job definitions yet. A worker (<code>spitfire worker</code>) registers its app's <code>@app.job</code>{" "}
          definitions when it starts; HTTP workers <code>POST /api/job-definitions</code>.
        </Empty>
      ) : null}
      {definitions?.length ? (
        <div className="table-wrap">
          <table className="table">
            <thead>
              <tr>
                <th>Job</th>
                <th>Defaults</th>
                <th className="hide-sm">Arguments</th>
                <th className="hide-sm">Registered</th>
              </tr>
            </thead>
            <tbody>
              {definitions.map((d) => (
                <tr key={d.name} data-definition={d.name}>
                  <td>
                    <strong className="mono">{d.name}</strong>
                    {d.validate ? <span className="badge">validated</span> : null}
                    <div className="muted small">{d.queue ? `→ ${d.queue}` : ""}</div>
                  </td>
                  <td>{describeDefaults(d)}</td>
                  <td className="hide-sm">
                    {argumentNames(d.schema).map((a) => (
                      <span key={a.name} className={`mono small ${a.required ? "" : "muted"}`}>
                        {a.name}
                        {a.required ? "" : "?"}{" "}
                      </span>
                    ))}
                    {d.schema != null ? (
                      <details>
                        <summary className="small">Schema</summary>
                        <JsonBlock value={d.schema} label={`schema of ${d.name}`} />
                      </details>
                    ) : (
                      <span className="muted small">no schema</span>
                    )}
                  </td>
                  <td className="hide-sm">
                    <Time at={d.updated_at} />
                    <div className="muted small">{d.registered_by}</div>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ) : null}
    </div>
  );
}

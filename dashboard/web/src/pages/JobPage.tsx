import { useMutation, useQueryClient } from "@tanstack/react-query";
import { Link, useNavigate, useParams } from "react-router";
import { cancelJob, deleteJob, requeueJob, retryJob } from "../api/endpoints";
import { useJob, useJobDefinitions, useStats } from "../api/queries";
import { PENDING_STATES, type Job, type JobState } from "../api/types";
import { ConfirmButton } from "../components/ConfirmButton";
import { ErrorBox, Loading } from "../components/ErrorBox";
import { JobAttempts } from "../components/JobAttempts";
import { JobTimeline } from "../components/JobTimeline";
import { JsonBlock } from "../components/JsonBlock";
import { StateBadge } from "../components/StateBadge";
import { FullTime } from "../components/Time";
import { payloadFields } from "../utils/definitions";
import { duration, prettyJson, relativeTime } from "../utils/format";
import { traceIdOf, traceUrl } from "../utils/trace";

function backoffText(job: Job): string {
  const b = job.backoff;
  if (!b) return "default";
  const jitter = b.jitter ? ", jitter" : "";
  if (b.delays?.length) return `after ${b.delays.map(duration).join(", ")}${jitter}`;
  if (b.kind === "fixed") return `fixed ${duration(b.base)}${jitter}`;
  if (b.kind === "linear") return `linear ${duration(b.base)} × attempt, cap ${duration(b.cap)}${jitter}`;
  return `${b.kind}, base ${duration(b.base)}, ×${b.factor}, cap ${duration(b.cap)}${jitter}`;
}

/** The payload's fields by the schema of the job's definition (`spitfire schemas push`, or a worker's
 * registration): each declared field's type, description and value; nothing without a schema. */
function PayloadFields({ job }: { job: Job }) {
  const { data: definitions } = useJobDefinitions();
  const definition = definitions?.find((d) => d.name === job.name);
  const fields = definition ? payloadFields(definition.schema, job.payload) : [];
  if (fields.length === 0) return null;
  return (
    <div className="card" data-testid="payload-fields">
      <div className="card-head">
        <h2>Payload fields</h2>
        <span className="muted">schema of {job.name}{definition?.validate ? ", checked at enqueue" : ""}</span>
      </div>
      <table className="table">
        <thead>
          <tr>
            <th>Field</th>
            <th>Type</th>
            <th>Value</th>
          </tr>
        </thead>
        <tbody>
          {fields.map((f) => (
            <tr key={f.name}>
              <td className="mono" title={f.description || undefined}>
                {f.name}
              </td>
              <td className="muted">{f.type}</td>
              <td className="mono">{f.set ? prettyJson(f.value) : <span className="muted">default</span>}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

/** The job's trace (from its `traceparent` header), linked when the server has a
 * --trace-url-template. */
function Trace({ job, template }: { job: Job; template?: string | null }) {
  const id = traceIdOf(job.headers);
  if (!id) return null;
  const url = traceUrl(template, id);
  return (
    <>
      <dt>Trace</dt>
      <dd className="mono" data-testid="trace-id">
        {url ? (
          <a href={url} target="_blank" rel="noopener noreferrer" title="Open the trace">
            {id}
          </a>
        ) : (
          id
        )}
      </dd>
    </>
  );
}

function Options({ job, traceTemplate }: { job: Job; traceTemplate?: string | null }) {
  return (
    <dl className="facts">
      <dt>Queue</dt>
      <dd>
        <Link to={`/queues/${encodeURIComponent(job.queue)}`}>{job.queue}</Link>
      </dd>
      <dt>Handler</dt>
      <dd className="mono">{job.name}</dd>
      <dt>Priority</dt>
      <dd>{job.priority}</dd>
      <dt>Attempts</dt>
      <dd>
        {job.attempts} of {job.max_attempts}
      </dd>
      <dt>Backoff</dt>
      <dd>{backoffText(job)}</dd>
      <dt>Timeout</dt>
      <dd>{job.timeout ? duration(job.timeout) : "none"}</dd>
      <dt>Idempotency key</dt>
      <dd className="mono">{job.idempotency_key ?? "–"}</dd>
      <dt>Created</dt>
      <dd>
        <FullTime at={job.created_at} />
      </dd>
      <dt>Run at</dt>
      <dd>
        <FullTime at={job.run_at} />
      </dd>
      <dt>Updated</dt>
      <dd>
        <FullTime at={job.updated_at} />
      </dd>
      {job.worker ? (
        <>
          <dt>Worker</dt>
          <dd className="mono">{job.worker}</dd>
          <dt>Lease until</dt>
          <dd>
            <FullTime at={job.lease_until} />
          </dd>
        </>
      ) : null}
      <Trace job={job} template={traceTemplate} />
      {job.headers && Object.keys(job.headers).length ? (
        <>
          <dt>Headers</dt>
          <dd>
            {Object.entries(job.headers).map(([k, v]) => (
              <div key={k} className="mono">
                {k}: {v}
              </div>
            ))}
          </dd>
        </>
      ) : null}
    </dl>
  );
}

function Progress({ job }: { job: Job }) {
  const p = job.progress;
  if (p === undefined || p === null) return <p className="muted">This job reports no progress.</p>;
  const pct = p.value === null ? null : Math.max(0, Math.min(100, p.value * 100));
  return (
    <div>
      {pct !== null && (
        <div className="progress" role="progressbar" aria-valuenow={pct} aria-valuemin={0} aria-valuemax={100}>
          <div style={{ width: `${pct}%` }} />
          <span>{pct.toFixed(0)}%</span>
        </div>
      )}
      {p.message !== null && <p>{p.message}</p>}
      <p className="muted">reported {relativeTime(p.at)}</p>
    </div>
  );
}

export function JobPage() {
  const id = useParams().id ?? "";
  const navigate = useNavigate();
  const client = useQueryClient();
  const { data: job, error, isLoading } = useJob(id);
  const { data: stats } = useStats(); // the server's --trace-url-template
  const settle = () => {
    void client.invalidateQueries({ queryKey: ["job", id] });
    void client.invalidateQueries({ queryKey: ["jobs"] });
  };
  const action = useMutation({
    mutationFn: async (what: "retry" | "requeue" | "cancel" | "delete") => {
      if (what === "retry") return retryJob(id);
      if (what === "cancel") return cancelJob(id);
      if (what === "delete") return deleteJob(id);
      return requeueJob(id);
    },
    onSuccess: (result, what) => {
      if (what === "requeue") navigate(`/jobs/${encodeURIComponent(result.id)}`);
      if (what === "delete") navigate(`/queues/${encodeURIComponent(result.queue)}`);
    },
    onSettled: settle,
  });
  const state = (job?.state ?? "") as JobState;
  return (
    <div className="page">
      <div className="page-head">
        <h1 className="job-title">
          {job ? <span className="mono">{job.name}</span> : "Job"} <span className="muted mono small">{id}</span>
          {job ? <StateBadge state={job.state} /> : null}
        </h1>
        {job ? (
          <div className="actions">
            <button
              type="button"
              className="btn primary"
              disabled={!(state === "dead" || state === "cancelled") || action.isPending}
              title="Run it again under the same id (dead or cancelled jobs)"
              onClick={() => action.mutate("retry")}
            >
              Retry
            </button>
            <button
              type="button"
              className="btn"
              disabled={action.isPending}
              title="Enqueue a new job with the same payload and options"
              onClick={() => action.mutate("requeue")}
            >
              Requeue
            </button>
            <ConfirmButton
              label="Cancel"
              danger
              disabled={!PENDING_STATES.includes(state)}
              confirm="Cancel this job?"
              onConfirm={() => action.mutate("cancel")}
            />
            <ConfirmButton label="Delete" danger confirm="Delete this job?" onConfirm={() => action.mutate("delete")} />
          </div>
        ) : null}
      </div>
      <ErrorBox error={error ?? action.error} />
      {isLoading ? <Loading /> : null}
      {job ? (
        <div className="job-grid">
          <div className="stack">
            <JsonBlock value={job.payload} label="Payload" />
            <PayloadFields job={job} />
            {job.result !== null && job.result !== undefined ? <JsonBlock value={job.result} label="Result" /> : null}
            <div className="card">
              <div className="card-head">
                <h2>Attempts</h2>
              </div>
              <JobAttempts job={job} />
            </div>
          </div>
          <div className="stack">
            <div className="card">
              <div className="card-head">
                <h2>Timeline</h2>
              </div>
              <JobTimeline job={job} />
            </div>
            <div className="card">
              <div className="card-head">
                <h2>Progress</h2>
              </div>
              <Progress job={job} />
            </div>
            <div className="card">
              <div className="card-head">
                <h2>Options</h2>
              </div>
              <Options job={job} traceTemplate={stats?.server?.trace_url_template} />
            </div>
          </div>
        </div>
      ) : null}
    </div>
  );
}

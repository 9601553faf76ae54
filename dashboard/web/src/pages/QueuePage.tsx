import { useMutation, useQueryClient } from "@tanstack/react-query";
import { useState } from "react";
import { Link, useNavigate, useParams } from "react-router";
import { deleteQueue, pauseQueue, resumeQueue } from "../api/endpoints";
import { keys, useQueue } from "../api/queries";
import { JOB_STATES, PENDING_STATES } from "../api/types";
import { HistoryChart } from "../components/Charts";
import { ConfirmButton } from "../components/ConfirmButton";
import { ErrorBox, Loading } from "../components/ErrorBox";
import { JobTable } from "../components/JobTable";
import { count, duration, rate } from "../utils/format";

export function QueuePage() {
  const name = useParams().queue ?? "";
  const navigate = useNavigate();
  const client = useQueryClient();
  const { data: q, error, isLoading } = useQueue(name);
  const [state, setState] = useState<string>("");
  const refresh = () => void client.invalidateQueries({ queryKey: keys.queues });
  const pause = useMutation({ mutationFn: () => (q?.paused ? resumeQueue(name) : pauseQueue(name)), onSettled: refresh });
  const remove = useMutation({
    mutationFn: () => deleteQueue(name),
    onSuccess: () => {
      refresh();
      navigate("/queues");
    },
  });
  const pending = q ? PENDING_STATES.reduce((s, st) => s + (q.counts[st] ?? 0), 0) : 0;
  return (
    <div className="page">
      <div className="page-head">
        <h1>
          <Link to="/queues" className="muted">
            Queues
          </Link>{" "}
          / {name}
          {q?.paused ? <span className="badge paused">paused</span> : null}
        </h1>
        {q ? (
          <div className="actions">
            <button type="button" className="btn" onClick={() => pause.mutate()} disabled={pause.isPending}>
              {q.paused ? "Resume" : "Pause"}
            </button>
            <ConfirmButton
              label="Delete queue"
              danger
              disabled={pending > 0}
              title={pending > 0 ? `${count(pending)} pending jobs: only an empty queue can be deleted here` : undefined}
              confirm={`Delete queue ${name} and its ${count(q.total)} finished jobs?`}
              onConfirm={() => remove.mutate()}
              busy={remove.isPending}
            />
          </div>
        ) : null}
      </div>
      <ErrorBox error={error ?? pause.error ?? remove.error} />
      {isLoading ? <Loading /> : null}
      {q ? (
        <>
          <div className="state-cards">
            {JOB_STATES.map((s) => (
              <button
                type="button"
                key={s}
                className={`state-card state-border-${s} ${state === s ? "active" : ""}`}
                aria-pressed={state === s}
                onClick={() => setState(state === s ? "" : s)}
              >
                <span className="state-card-n">{count(q.counts[s] ?? 0)}</span>
                <span className="state-card-label">{s}</span>
              </button>
            ))}
          </div>
          <div className="grid2">
            <div className="card">
              <dl className="facts">
                <dt>Status</dt>
                <dd data-testid="queue-status">{q.paused ? "paused" : "running"}</dd>
                <dt>Durability</dt>
                <dd>{q.durability}</dd>
                <dt>Latency</dt>
                <dd title="age of the oldest job waiting to be delivered">{q.latency ? duration(q.latency) : "–"}</dd>
                <dt>Enqueued</dt>
                <dd>{rate(q.enqueued_per_s)}/s</dd>
                <dt>Processed</dt>
                <dd>{rate(q.processed_per_s)}/s</dd>
                <dt>Jobs</dt>
                <dd>{count(q.total)}</dd>
              </dl>
            </div>
            <HistoryChart queue={name} />
          </div>
          <h2>{state ? `${state[0]?.toUpperCase()}${state.slice(1)} jobs` : "Jobs"}</h2>
          <JobTable
            query={{ queue: name, ...(state ? { state: [state] } : {}) }}
            matching={state ? q.counts[state] : q.total}
            showQueue={false}
          />
        </>
      ) : null}
    </div>
  );
}

// Jobs across queues: by state (several at once), queue, handler name and time, newest or oldest
// first; or the results of a search (?q=). The filter lives in the URL, so a view can be shared.

import { useEffect, useState } from "react";
import { useNavigate, useSearchParams } from "react-router";
import { useJobs, useQueues, useStats } from "../api/queries";
import { JOB_STATES } from "../api/types";
import { JobTable } from "../components/JobTable";
import { count, epochToLocalInput, localInputToEpoch } from "../utils/format";

export function JobsPage() {
  const [params, setParams] = useSearchParams();
  const navigate = useNavigate();
  const q = params.get("q") ?? "";
  const states = params.getAll("state").flatMap((s) => s.split(",")).filter(Boolean);
  const queue = params.get("queue") ?? "";
  const name = params.get("name") ?? "";
  const after = params.get("after") ?? "";
  const before = params.get("before") ?? "";
  const order = params.get("order") === "oldest" ? "oldest" : "newest";
  const { data: stats } = useStats();
  const { data: queues } = useQueues();
  const [nameText, setNameText] = useState(name);
  useEffect(() => setNameText(name), [name]);

  const set = (key: string, value: string | string[] | null) => {
    const next = new URLSearchParams(params);
    next.delete(key);
    if (Array.isArray(value)) for (const v of value) next.append(key, v);
    else if (value) next.set(key, value);
    setParams(next);
  };
  const toggleState = (s: string) => set("state", states.includes(s) ? states.filter((x) => x !== s) : [...states, s]);

  // A search for an exact job id opens that job.
  const search = useJobs({ q, limit: 2 }, Boolean(q));
  useEffect(() => {
    const only = search.data?.jobs[0];
    if (q && only && only.id === q) navigate(`/jobs/${encodeURIComponent(only.id)}`, { replace: true });
  }, [q, search.data, navigate]);

  const countsOf = (s: string) => {
    if (queue) return queues?.find((x) => x.name === queue)?.counts[s];
    return stats?.counts[s];
  };
  const matching =
    !name && !after && !before
      ? (states.length ? states : [...JOB_STATES]).reduce<number | undefined>((sum, s) => {
          const c = countsOf(s);
          return sum === undefined || c === undefined ? undefined : sum + c;
        }, 0)
      : undefined;

  if (q) {
    return (
      <div className="page">
        <div className="page-head">
          <h1>Search: “{q}”</h1>
          <button type="button" className="btn ghost" onClick={() => navigate("/jobs")}>
            Clear search
          </button>
        </div>
        <p className="muted">By job id, idempotency key or handler name, newest first.</p>
        <JobTable query={{ q }} />
      </div>
    );
  }

  return (
    <div className="page">
      <h1>Jobs</h1>
      <div className="state-tabs" role="group" aria-label="States">
        <button type="button" className={states.length ? "" : "active"} aria-pressed={!states.length} onClick={() => set("state", null)}>
          all
        </button>
        {JOB_STATES.map((s) => (
          <button
            type="button"
            key={s}
            className={states.includes(s) ? "active" : ""}
            aria-pressed={states.includes(s)}
            onClick={() => toggleState(s)}
          >
            <span className={`dot state-bg-${s}`} aria-hidden="true" />
            {s} <span className="muted">{count(countsOf(s) ?? 0)}</span>
          </button>
        ))}
      </div>
      <form
        className="filters"
        onSubmit={(e) => {
          e.preventDefault();
          set("name", nameText.trim() || null);
        }}
      >
        <label>
          Queue
          <select value={queue} onChange={(e) => set("queue", e.target.value || null)}>
            <option value="">all queues</option>
            {(queues ?? []).map((x) => (
              <option key={x.name} value={x.name}>
                {x.name}
              </option>
            ))}
          </select>
        </label>
        <label>
          Handler
          <input
            type="text"
            placeholder="exact name"
            value={nameText}
            onChange={(e) => setNameText(e.target.value)}
            onBlur={() => set("name", nameText.trim() || null)}
          />
        </label>
        <label>
          After
          <input
            type="datetime-local"
            value={after ? epochToLocalInput(Number(after)) : ""}
            onChange={(e) => set("after", String(localInputToEpoch(e.target.value) ?? ""))}
          />
        </label>
        <label>
          Before
          <input
            type="datetime-local"
            value={before ? epochToLocalInput(Number(before)) : ""}
            onChange={(e) => set("before", String(localInputToEpoch(e.target.value) ?? ""))}
          />
        </label>
        <label>
          Order
          <select value={order} onChange={(e) => set("order", e.target.value === "oldest" ? "oldest" : null)}>
            <option value="newest">newest first</option>
            <option value="oldest">oldest first</option>
          </select>
        </label>
      </form>
      <JobTable
        query={{
          ...(states.length ? { state: states } : {}),
          ...(queue ? { queue } : {}),
          ...(name ? { name } : {}),
          ...(after ? { after } : {}),
          ...(before ? { before } : {}),
          order,
        }}
        matching={matching}
      />
    </div>
  );
}

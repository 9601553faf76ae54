// A page of jobs from the server (never the whole list: paged by cursor), with multi-select and bulk
// actions on the selection or on every job matching the filter (POST /api/jobs:bulk).

import { useQueryClient } from "@tanstack/react-query";
import { useEffect, useMemo, useState } from "react";
import { Link } from "react-router";
import { bulk, type JobListQuery } from "../api/endpoints";
import { useJobs } from "../api/queries";
import type { BulkAction, BulkResult, Job, JobFilter } from "../api/types";
import { count } from "../utils/format";
import { ConfirmButton } from "./ConfirmButton";
import { Empty, ErrorBox } from "./ErrorBox";
import { StateBadge } from "./StateBadge";
import { Time } from "./Time";

const ACTIONS: { action: BulkAction; label: string; danger?: boolean; verb: string }[] = [
  { action: "retry", label: "Retry", verb: "Retry" },
  { action: "requeue", label: "Requeue", verb: "Requeue (as new jobs)" },
  { action: "cancel", label: "Cancel", verb: "Cancel", danger: true },
  { action: "delete", label: "Delete", verb: "Delete", danger: true },
];

const PAGE_SIZES = [25, 50, 100, 200];

interface Props {
  query: Omit<JobListQuery, "cursor" | "limit">;
  /** How many jobs match the filter, when the counters tell (shown on "all matching"). */
  matching?: number;
  showQueue?: boolean;
}

function lastError(job: Job): string | null {
  const e = job.errors[job.errors.length - 1];
  return e ? e.error.split("\n")[0] ?? null : null;
}

export function JobTable({ query, matching, showQueue = true }: Props) {
  const client = useQueryClient();
  const [limit, setLimit] = useState(50);
  const [cursors, setCursors] = useState<string[]>([]);
  const [selected, setSelected] = useState<Set<string>>(new Set());
  const [busy, setBusy] = useState(false);
  const [allAction, setAllAction] = useState<BulkAction>("retry");
  const [result, setResult] = useState<{ text: string; error?: unknown } | null>(null);
  const queryKey = JSON.stringify(query);
  useEffect(() => {
    setCursors([]);
    setSelected(new Set());
    setResult(null);
  }, [queryKey, limit]);
  const cursor = cursors[cursors.length - 1];
  const { data, error, isLoading, isFetching } = useJobs({ ...query, limit, ...(cursor ? { cursor } : {}) });
  const jobs = useMemo(() => data?.jobs ?? [], [data]);
  const allOnPage = jobs.length > 0 && jobs.every((j) => selected.has(j.id));
  const filter: JobFilter | null = query.q
    ? null
    : {
        ...(query.queue ? { queue: query.queue } : {}),
        ...(query.state?.length ? { state: query.state } : {}),
        ...(query.name ? { name: query.name } : {}),
        ...(query.before ? { before: query.before } : {}),
        ...(query.after ? { after: query.after } : {}),
      };

  const toggle = (id: string) =>
    setSelected((s) => {
      const n = new Set(s);
      if (n.has(id)) n.delete(id);
      else n.add(id);
      return n;
    });

  const run = async (action: BulkAction, target: { ids: string[] } | { filter: JobFilter }) => {
    setBusy(true);
    setResult(null);
    try {
      const r: BulkResult = await bulk(action, target);
      const skipped = r.failed ? `, ${count(r.failed)} not applicable` : "";
      setResult({ text: `${action}: ${count(r.done)} of ${count(r.matched)} done${skipped}` });
      setSelected(new Set());
    } catch (err) {
      setResult({ text: `${action} failed`, error: err });
    } finally {
      setBusy(false);
      void client.invalidateQueries({ queryKey: ["jobs"] });
      void client.invalidateQueries({ queryKey: ["queues"] });
      void client.invalidateQueries({ queryKey: ["job"] });
    }
  };

  const n = selected.size;
  const all = matching !== undefined ? `all ${count(matching)} matching` : "all matching";
  return (
    <section className="job-table" aria-busy={isFetching}>
      <div className="toolbar" role="toolbar" aria-label="Bulk actions">
        <span className="muted sel-count">{n ? `${count(n)} selected` : "Select jobs for actions"}</span>
        {ACTIONS.map((a) => (
          <ConfirmButton
            key={a.action}
            label={a.label}
            danger={a.danger}
            disabled={!n}
            busy={busy}
            confirm={a.danger ? `${a.verb} ${count(n)} job${n === 1 ? "" : "s"}?` : undefined}
            onConfirm={() => void run(a.action, { ids: [...selected] })}
          />
        ))}
        {filter ? (
          <span className="bulk-all">
            <label className="muted" htmlFor="bulk-all-action">
              All matching:
            </label>
            <select id="bulk-all-action" value={allAction} onChange={(e) => setAllAction(e.target.value as BulkAction)}>
              {ACTIONS.map((a) => (
                <option key={a.action} value={a.action}>
                  {a.label.toLowerCase()}
                </option>
              ))}
            </select>
            <ConfirmButton
              label={`Apply to ${all}`}
              danger
              busy={busy}
              disabled={matching === 0}
              confirm={`${ACTIONS.find((a) => a.action === allAction)?.verb ?? allAction} ${all} jobs${
                filter.state ? ` (${filter.state.join(", ")})` : ""
              }?`}
              onConfirm={() => void run(allAction, { filter })}
            />
          </span>
        ) : null}
      </div>
      {result ? (
        <div className={result.error ? "" : "notice"} role="status" data-testid="bulk-result">
          {result.error ? <ErrorBox error={result.error} /> : result.text}
        </div>
      ) : null}
      <ErrorBox error={error} />
      {isLoading ? <div className="loading">Loading…</div> : null}
      {!isLoading && !error && jobs.length === 0 ? <Empty>No jobs match.</Empty> : null}
      {jobs.length ? (
        <div className="table-wrap">
          <table className="table">
            <thead>
              <tr>
                <th className="check">
                  <input
                    type="checkbox"
                    aria-label="Select every job on this page"
                    checked={allOnPage}
                    onChange={() =>
                      setSelected(allOnPage ? new Set() : new Set([...selected, ...jobs.map((j) => j.id)]))
                    }
                  />
                </th>
                <th>Job</th>
                <th>State</th>
                {showQueue ? <th className="hide-sm">Queue</th> : null}
                <th className="hide-sm num">Attempts</th>
                <th className="hide-sm">Created</th>
                <th>Updated</th>
              </tr>
            </thead>
            <tbody>
              {jobs.map((job) => {
                const err = lastError(job);
                return (
                  <tr key={job.id} className={selected.has(job.id) ? "selected" : ""} data-job-id={job.id}>
                    <td className="check">
                      <input
                        type="checkbox"
                        aria-label={`Select job ${job.id}`}
                        checked={selected.has(job.id)}
                        onChange={() => toggle(job.id)}
                      />
                    </td>
                    <td className="job-cell">
                      <Link to={`/jobs/${encodeURIComponent(job.id)}`} title={job.id} className="mono">
                        {job.id}
                      </Link>{" "}
                      <span className="job-name">{job.name}</span>
                      {err && (job.state === "dead" || job.state === "retrying") ? (
                        <div className="row-error" title={err}>
                          {err}
                        </div>
                      ) : null}
                    </td>
                    <td>
                      <StateBadge state={job.state} />
                    </td>
                    {showQueue ? (
                      <td className="hide-sm">
                        <Link to={`/queues/${encodeURIComponent(job.queue)}`}>{job.queue}</Link>
                      </td>
                    ) : null}
                    <td className="hide-sm num">
                      {job.attempts}/{job.max_attempts}
                    </td>
                    <td className="hide-sm">
                      <Time at={job.created_at} />
                    </td>
                    <td>
                      <Time at={job.updated_at} />
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      ) : null}
      <div className="pager">
        <button type="button" className="btn" disabled={!cursors.length} onClick={() => setCursors((c) => c.slice(0, -1))}>
          ← Previous
        </button>
        <span className="muted">Page {cursors.length + 1}</span>
        <button
          type="button"
          className="btn"
          disabled={!data?.next_cursor}
          onClick={() => data?.next_cursor && setCursors((c) => [...c, data.next_cursor as string])}
        >
          Next →
        </button>
        <label className="muted">
          Per page{" "}
          <select value={limit} onChange={(e) => setLimit(Number(e.target.value))}>
            {PAGE_SIZES.map((s) => (
              <option key={s} value={s}>
                {s}
              </option>
            ))}
          </select>
        </label>
      </div>
    </section>
  );
}

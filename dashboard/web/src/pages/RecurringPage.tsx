import { useMutation, useQueryClient } from "@tanstack/react-query";
import { Link } from "react-router";
import { deleteSchedule, scheduleAction, type ScheduleAction } from "../api/endpoints";
import { keys, useSchedules } from "../api/queries";
import { ConfirmButton } from "../components/ConfirmButton";
import { Empty, ErrorBox, Loading } from "../components/ErrorBox";
import { StateBadge } from "../components/StateBadge";
import { Time } from "../components/Time";
import { describeCron } from "../utils/cron";

export function RecurringPage() {
  const client = useQueryClient();
  const { data: schedules, error, isLoading } = useSchedules();
  const act = useMutation({
    mutationFn: ({ name, action }: { name: string; action: ScheduleAction | "delete" }) =>
      action === "delete" ? deleteSchedule(name) : scheduleAction(name, action),
    onSettled: () => void client.invalidateQueries({ queryKey: keys.schedules }),
  });
  return (
    <div className="page">
      <h1>Recurring</h1>
      <ErrorBox error={error ?? act.error} />
      {isLoading ? <Loading /> : null}
      {schedules && !schedules.length ? (
        <Empty>
          No recurring jobs yet. Schedules made with <code>@app.cron(...)</code>, <code>spitfire schedules add</code> or{" "}
          <code>POST /api/schedules</code> show up here.
        </Empty>
      ) : null}
      {schedules?.length ? (
        <div className="table-wrap">
          <table className="table">
            <thead>
              <tr>
                <th>Schedule</th>
                <th>Cron</th>
                <th className="hide-sm">Timezone</th>
                <th>Next run</th>
                <th className="hide-sm">Last run</th>
                <th>Actions</th>
              </tr>
            </thead>
            <tbody>
              {schedules.map((s) => (
                <tr key={s.name}>
                  <td>
                    <strong>{s.name}</strong>
                    {s.paused ? <span className="badge paused">paused</span> : null}
                    <div className="muted small">
                      {s.job ?? ""} {s.queue ? `→ ${s.queue}` : ""}
                    </div>
                  </td>
                  <td>
                    {describeCron(s.cron) ?? <span className="mono">{s.cron}</span>}
                    {describeCron(s.cron) ? <div className="muted mono small">{s.cron}</div> : null}
                  </td>
                  <td className="hide-sm">{s.timezone ?? "UTC"}</td>
                  <td>{s.paused ? <span className="muted">paused</span> : <Time at={s.next_run_at} />}</td>
                  <td className="hide-sm">
                    <Time at={s.last_run_at} fallback="never" />{" "}
                    {s.last_job_id ? (
                      <Link to={`/jobs/${encodeURIComponent(s.last_job_id)}`}>
                        <StateBadge state={s.last_job_state ?? "job"} />
                      </Link>
                    ) : null}
                  </td>
                  <td>
                    <div className="actions">
                    <button type="button" className="btn small" onClick={() => act.mutate({ name: s.name, action: "trigger" })}>
                      Trigger now
                    </button>
                    <button
                      type="button"
                      className="btn small"
                      onClick={() => act.mutate({ name: s.name, action: s.paused ? "resume" : "pause" })}
                    >
                      {s.paused ? "Resume" : "Pause"}
                    </button>
                    <ConfirmButton
                      label="Delete"
                      danger
                      confirm={`Delete ${s.name}?`}
                      small
                      onConfirm={() => act.mutate({ name: s.name, action: "delete" })}
                    />
                    </div>
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

import type { Job } from "../api/types";
import { absoluteTime, duration } from "../utils/format";
import { StateBadge } from "./StateBadge";
import { Time } from "./Time";

/** Every transition of a job, oldest first, with the time spent in the state before it. */
export function JobTimeline({ job }: { job: Job }) {
  // The history starts with the state the job was created in; an older server's may not.
  const first = job.history[0];
  const steps = first && first.at - job.created_at < 0.001 ? job.history : [{ state: "created", at: job.created_at }, ...job.history];
  return (
    <ol className="timeline" aria-label="Timeline">
      {steps.map((t, i) => {
        const prev = steps[i - 1];
        return (
          <li key={`${t.state}-${t.at}-${i}`}>
            <span className={`tl-dot state-bg-${t.state}`} aria-hidden="true" />
            <StateBadge state={t.state} />
            <span title={absoluteTime(t.at)}>
              <Time at={t.at} />
            </span>
            {prev ? <span className="muted"> +{duration(t.at - prev.at)}</span> : null}
          </li>
        );
      })}
    </ol>
  );
}

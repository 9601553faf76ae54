import type { Job } from "../api/types";
import { Empty } from "./ErrorBox";
import { FullTime } from "./Time";

/** Every failed attempt of a job with its error and traceback, the latest first. */
export function JobAttempts({ job }: { job: Job }) {
  if (!job.errors.length) return <Empty>No failed attempts.</Empty>;
  return (
    <ol className="attempts">
      {[...job.errors].reverse().map((e) => (
        <li key={`${e.attempt}-${e.at}`} className="attempt">
          <div className="attempt-head">
            <strong>Attempt {e.attempt}</strong> <FullTime at={e.at} />
          </div>
          <pre className="code error-text">{e.error}</pre>
          {e.traceback ? (
            <details open={e === job.errors[job.errors.length - 1]}>
              <summary>Traceback</summary>
              <pre className="code">{e.traceback}</pre>
            </details>
          ) : null}
        </li>
      ))}
    </ol>
  );
}

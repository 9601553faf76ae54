import { useLive } from "../live/LiveProvider";

const TEXT = {
  open: "live",
  connecting: "connecting",
  reconnecting: "reconnecting",
  unauthorized: "signed out",
  closed: "offline",
} as const;

/** Whether the live event stream is connected (lists and counters update by themselves). */
export function ConnectionIndicator() {
  const { status } = useLive();
  return (
    <span className={`conn conn-${status}`} role="status" aria-live="polite" data-testid="connection" data-status={status}>
      <span className="dot" aria-hidden="true" />
      <span className="conn-text">{TEXT[status]}</span>
    </span>
  );
}

/** A job state as a coloured label (the colours are in styles.css, one per state). */
export function StateBadge({ state }: { state: string }) {
  return <span className={`badge state-${state}`}>{state}</span>;
}

import { useState } from "react";

interface Props {
  label: string;
  /** The question asked before a destructive action; none: act at once. */
  confirm?: string;
  onConfirm: () => void;
  disabled?: boolean;
  danger?: boolean;
  busy?: boolean;
  title?: string;
  small?: boolean;
}

/** A button that, when it destroys something, asks in place ("Delete 3 jobs? Yes / No") instead of a
 * blocking browser dialog. */
export function ConfirmButton({ label, confirm, onConfirm, disabled, danger, busy, title, small }: Props) {
  const [asking, setAsking] = useState(false);
  const cls = `btn${danger ? " danger" : ""}${small ? " small" : ""}`;
  if (asking && confirm) {
    return (
      <span
        className="confirm"
        role="group"
        aria-label={confirm}
        onKeyDown={(e) => {
          if (e.key === "Escape") setAsking(false);
        }}
      >
        <span>{confirm}</span>
        <button
          type="button"
          className={cls}
          autoFocus
          onClick={() => {
            setAsking(false);
            onConfirm();
          }}
        >
          Yes
        </button>
        <button type="button" className="btn ghost" onClick={() => setAsking(false)}>
          No
        </button>
      </span>
    );
  }
  return (
    <button
      type="button"
      className={cls}
      disabled={disabled || busy}
      title={title}
      onClick={() => (confirm ? setAsking(true) : onConfirm())}
    >
      {busy ? `${label}…` : label}
    </button>
  );
}

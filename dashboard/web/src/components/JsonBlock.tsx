import { useState } from "react";
import { prettyJson } from "../utils/format";

/** A JSON value pretty-printed, with a copy button. */
export function JsonBlock({ value, label }: { value: unknown; label: string }) {
  const text = prettyJson(value);
  const [copied, setCopied] = useState(false);
  const copy = () => {
    void navigator.clipboard?.writeText(text).then(() => {
      setCopied(true);
      setTimeout(() => setCopied(false), 1500);
    });
  };
  return (
    <div className="json-block">
      <div className="json-head">
        <span>{label}</span>
        <button type="button" className="btn small ghost" onClick={copy} aria-label={`copy ${label}`}>
          {copied ? "copied" : "copy"}
        </button>
      </div>
      <pre className="code">{text}</pre>
    </div>
  );
}

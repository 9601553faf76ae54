import { useEffect, useRef, useState } from "react";
import { useNavigate } from "react-router";

/** Search by job id, idempotency key or handler name, from every page ("/" focuses it). */
export function SearchBox() {
  const navigate = useNavigate();
  const [text, setText] = useState("");
  const input = useRef<HTMLInputElement>(null);
  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      const target = e.target as HTMLElement | null;
      const typing = target && (target.tagName === "INPUT" || target.tagName === "TEXTAREA" || target.isContentEditable);
      if (e.key === "/" && !typing) {
        e.preventDefault();
        input.current?.focus();
      }
    };
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  }, []);
  return (
    <form
      className="search"
      role="search"
      onSubmit={(e) => {
        e.preventDefault();
        const q = text.trim();
        if (q) navigate(`/jobs?q=${encodeURIComponent(q)}`);
      }}
    >
      <input
        ref={input}
        type="search"
        placeholder="Search id, key or handler  /"
        aria-label="Search jobs by id, idempotency key or handler name"
        value={text}
        onChange={(e) => setText(e.target.value)}
        onKeyDown={(e) => {
          if (e.key === "Escape") {
            setText("");
            input.current?.blur();
          }
        }}
      />
    </form>
  );
}

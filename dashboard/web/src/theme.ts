// Dark and light themes: following the system by default, or the one picked with the toggle
// (remembered in local storage). The resolved theme is set as <html data-theme>.

import { useCallback, useEffect, useState } from "react";

export type ThemeMode = "system" | "light" | "dark";
const KEY = "spitfire.theme";
const ORDER: ThemeMode[] = ["system", "light", "dark"];

function stored(): ThemeMode {
  try {
    const v = localStorage.getItem(KEY);
    return v === "light" || v === "dark" ? v : "system";
  } catch {
    return "system";
  }
}

const media = () => window.matchMedia("(prefers-color-scheme: dark)");

export function resolveTheme(mode: ThemeMode, systemDark: boolean): "light" | "dark" {
  return mode === "system" ? (systemDark ? "dark" : "light") : mode;
}

export function useTheme(): { mode: ThemeMode; resolved: "light" | "dark"; next: () => void } {
  const [mode, setMode] = useState<ThemeMode>(stored);
  const [systemDark, setSystemDark] = useState(() => media().matches);
  useEffect(() => {
    const m = media();
    const on = (e: MediaQueryListEvent) => setSystemDark(e.matches);
    m.addEventListener("change", on);
    return () => m.removeEventListener("change", on);
  }, []);
  const resolved = resolveTheme(mode, systemDark);
  useEffect(() => {
    document.documentElement.dataset.theme = resolved;
  }, [resolved]);
  const next = useCallback(() => {
    setMode((m) => {
      const n = ORDER[(ORDER.indexOf(m) + 1) % ORDER.length] ?? "system";
      try {
        if (n === "system") localStorage.removeItem(KEY);
        else localStorage.setItem(KEY, n);
      } catch {
        // storage disabled: the choice lasts for this page
      }
      return n;
    });
  }, []);
  return { mode, resolved, next };
}

// A time-series chart (uPlot): lines over a time axis in the browser's timezone, sized to its
// container, coloured from the theme's CSS variables (redrawn when the theme changes).

import { useEffect, useRef, useSyncExternalStore } from "react";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";

export interface SeriesSpec {
  label: string;
  /** A CSS variable holding the colour, e.g. "--c-succeeded". */
  color: string;
  fill?: boolean;
}

interface Props {
  series: SeriesSpec[];
  /** [times (epoch seconds), ...one array per series]; null values leave a gap. */
  data: [number[], ...(number | null)[][]];
  height?: number;
  /** Unit of the y axis, e.g. "/s". */
  unit?: string;
  label: string;
  bars?: boolean;
  /** Show a sliding window of this many seconds ending at the last point (the realtime graph). */
  window?: number;
}

function subscribeTheme(cb: () => void): () => void {
  const obs = new MutationObserver(cb);
  obs.observe(document.documentElement, { attributes: true, attributeFilter: ["data-theme"] });
  return () => obs.disconnect();
}
const themeName = () => document.documentElement.dataset.theme ?? "light";

export function Chart({ series, data, height = 180, unit = "", label, bars = false, window }: Props) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const theme = useSyncExternalStore(subscribeTheme, themeName);
  const windowRef = useRef(window);
  windowRef.current = window; // read by the x range on every redraw: no new chart when it grows
  const sliding = window !== undefined;

  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const css = getComputedStyle(document.documentElement);
    const v = (name: string) => css.getPropertyValue(name).trim() || "#888";
    const axis = { stroke: v("--fg-muted"), grid: { stroke: v("--border"), width: 1 }, ticks: { stroke: v("--border") } };
    const paths = bars ? uPlot.paths.bars?.({ size: [0.8, 40] }) : undefined;
    const opts: uPlot.Options = {
      width: Math.max(200, el.clientWidth),
      height,
      legend: { show: true, live: true },
      cursor: { drag: { x: false, y: false } },
      scales: {
        x: sliding
          ? {
              time: true,
              range: (_u, _min, max) => {
                const end = Number.isFinite(max) ? max : Date.now() / 1000;
                return [end - (windowRef.current ?? 300), end];
              },
            }
          : { time: true },
        y: { range: (_u, _min, max) => [0, Math.max(1, max * 1.1)] } },
      axes: [
        { ...axis },
        { ...axis, size: 50, values: (_u, ticks) => ticks.map((t) => `${Number(t.toPrecision(3))}${unit}`) },
      ],
      series: [
        {},
        ...series.map((s) => ({
          label: s.label,
          stroke: v(s.color),
          width: 1.5,
          fill: s.fill ? `${v(s.color)}33` : undefined,
          spanGaps: false,
          points: { show: false },
          ...(paths ? { paths } : {}),
        })),
      ],
    };
    const u = new uPlot(opts, data as uPlot.AlignedData, el);
    plot.current = u;
    const ro = new ResizeObserver(() => u.setSize({ width: Math.max(200, el.clientWidth), height }));
    ro.observe(el);
    return () => {
      ro.disconnect();
      u.destroy();
      plot.current = null;
    };
    // the data is set by the effect below; recreate only when the shape or the theme changes
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [theme, height, unit, bars, sliding, series.map((s) => s.label + s.color).join()]);

  useEffect(() => {
    plot.current?.setData(data as uPlot.AlignedData);
  }, [data]);

  return <div className="chart" ref={box} role="img" aria-label={label} />;
}

// Connects the dashboard to GET /api/events?jobs=batched with the fetch-based SSE client: `stats` events
// replace the cached /api/stats and feed the realtime graph; `jobs` events refresh, in batches, the lists,
// counters and jobs on screen; a reconnection or an `event: reset` (events were missed, e.g. the
// server restarted) refetches everything: the resync.

import { useQueryClient } from "@tanstack/react-query";
import { createContext, useContext, useEffect, useMemo, useState, type ReactNode } from "react";
import { authHeaders, setAuthNeeded } from "../api/auth";
import { keys } from "../api/queries";
import type { JobEvent, JobsEvent, Stats } from "../api/types";
import { ChangeBatcher } from "./batcher";
import { RateSeries } from "./realtime";
import { SseClient, type SseStatus } from "./sse";

interface Live {
  status: SseStatus;
  series: RateSeries;
}

const LiveContext = createContext<Live>({ status: "closed", series: new RateSeries() });

export function useLive(): Live {
  return useContext(LiveContext);
}

export function LiveProvider({ children }: { children: ReactNode }) {
  const client = useQueryClient();
  const [status, setStatus] = useState<SseStatus>("connecting");
  const series = useMemo(() => new RateSeries(), []);

  useEffect(() => {
    const batcher = new ChangeBatcher((ids, _queues, unnamed) => {
      void client.invalidateQueries({ queryKey: keys.jobs });
      void client.invalidateQueries({ queryKey: keys.queues });
      void client.invalidateQueries({ queryKey: keys.workers });
      if (unnamed) void client.invalidateQueries({ queryKey: ["job"] });
      else for (const id of ids) void client.invalidateQueries({ queryKey: keys.job(id) });
    });
    const sse = new SseClient({
      // Batched: one event per 250 ms at most, whatever the server's throughput.
      url: "/api/events?jobs=batched",
      headers: authHeaders,
      onStatus: (s) => {
        setStatus(s);
        if (s === "unauthorized") setAuthNeeded(true);
      },
      onOpen: ({ resync }) => {
        if (resync) void client.invalidateQueries();
      },
      onMessage: (m) => {
        if (m.event === "stats") {
          const stats = JSON.parse(m.data) as Stats;
          series.push(stats);
          client.setQueryData(keys.stats, stats);
        } else if (m.event === "jobs") {
          const batch = JSON.parse(m.data) as JobsEvent;
          batcher.addMany(batch.ids, batch.queues, batch.more);
        } else if (m.event === "progress") {
          const report = JSON.parse(m.data) as JobEvent;
          batcher.add(report.id, report.queue);
        } else if (m.event === "job") {
          const event = JSON.parse(m.data) as JobEvent;
          batcher.add(event.id, event.queue);
        } else if (m.event === "reset") {
          void client.invalidateQueries();
        }
      },
    });
    sse.start();
    return () => {
      sse.close();
      batcher.cancel();
    };
  }, [client, series]);

  const value = useMemo(() => ({ status, series }), [status, series]);
  return <LiveContext.Provider value={value}>{children}</LiveContext.Provider>;
}

// TanStack Query keys and hooks: the cache is keyed by API route and refreshed by live events
// (live/LiveProvider.tsx) rather than by polling.

import { keepPreviousData, useQuery } from "@tanstack/react-query";
import {
  fetchHistory,
  fetchJob,
  fetchJobDefinitions,
  fetchJobs,
  fetchQueue,
  fetchQueues,
  fetchSchedules,
  fetchStats,
  fetchWorkers,
  type JobListQuery,
} from "./endpoints";

export const keys = {
  stats: ["stats"] as const,
  queues: ["queues"] as const,
  queue: (name: string) => ["queues", name] as const,
  jobs: ["jobs"] as const,
  jobList: (query: JobListQuery) => ["jobs", query] as const,
  job: (id: string) => ["job", id] as const,
  workers: ["workers"] as const,
  history: (minutes: number, step: number, queue?: string) => ["history", minutes, step, queue ?? ""] as const,
  schedules: ["schedules"] as const,
  definitions: ["job-definitions"] as const,
};

export const useStats = () => useQuery({ queryKey: keys.stats, queryFn: ({ signal }) => fetchStats(signal) });

export const useQueues = () => useQuery({ queryKey: keys.queues, queryFn: ({ signal }) => fetchQueues(signal) });

export const useQueue = (name: string) =>
  useQuery({ queryKey: keys.queue(name), queryFn: ({ signal }) => fetchQueue(name, signal) });

export const useJobs = (query: JobListQuery, enabled = true) =>
  useQuery({
    queryKey: keys.jobList(query),
    queryFn: ({ signal }) => fetchJobs(query, signal),
    placeholderData: keepPreviousData,
    enabled,
  });

export const useJob = (id: string) => useQuery({ queryKey: keys.job(id), queryFn: ({ signal }) => fetchJob(id, signal) });

export const useWorkers = () =>
  useQuery({
    queryKey: keys.workers,
    queryFn: ({ signal }) => fetchWorkers(signal),
    // Heartbeats are not events: look again now and then for "last seen" and aborted jobs.
    refetchInterval: 10_000,
  });

export const useHistory = (minutes: number, step: number, queue?: string) =>
  useQuery({
    queryKey: keys.history(minutes, step, queue),
    queryFn: ({ signal }) => fetchHistory(minutes, step, queue, signal),
    refetchInterval: 60_000, // the current bucket fills minute by minute
    placeholderData: keepPreviousData,
  });

export const useSchedules = () =>
  useQuery({ queryKey: keys.schedules, queryFn: ({ signal }) => fetchSchedules(signal), refetchInterval: 30_000 });

// Definitions change when a worker starts: no event carries them, so look again now and then.
export const useJobDefinitions = () =>
  useQuery({
    queryKey: keys.definitions,
    queryFn: ({ signal }) => fetchJobDefinitions(signal),
    refetchInterval: 30_000,
  });

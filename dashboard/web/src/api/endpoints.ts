// One function per API route the dashboard uses. Where a route is newer than the server answering
// (dashboard/API.md), the function falls back to what an older server offers, or answers "nothing
// yet", so a page shows an empty state instead of an error.

import { ApiError, del, get, post } from "./client";
import type {
  BulkAction,
  BulkResult,
  Job,
  JobDefinition,
  JobFilter,
  JobPage,
  Queue,
  Schedule,
  Stats,
  StatsHistory,
  WorkerList,
} from "./types";

const enc = encodeURIComponent;

export const fetchStats = (signal?: AbortSignal) => get<Stats>("/api/stats", {}, signal);

export async function fetchQueues(signal?: AbortSignal): Promise<Queue[]> {
  return (await get<{ queues: Queue[] }>("/api/queues", {}, signal)).queues;
}

export const fetchQueue = (name: string, signal?: AbortSignal) => get<Queue>(`/api/queues/${enc(name)}`, {}, signal);

export const pauseQueue = (name: string) => post<Queue>(`/api/queues/${enc(name)}/pause`);
export const resumeQueue = (name: string) => post<Queue>(`/api/queues/${enc(name)}/resume`);
export const deleteQueue = (name: string) =>
  del<{ queue: string; jobs: number; pending: number }>(`/api/queues/${enc(name)}`);

export const fetchJob = (id: string, signal?: AbortSignal) => get<Job>(`/api/jobs/${enc(id)}`, {}, signal);

export interface JobListQuery extends JobFilter {
  q?: string;
  order?: "newest" | "oldest";
  limit?: number;
  cursor?: string;
}

/** A page of jobs across queues (GET /api/jobs). An older server only searches (needs `q`); then a
 * one-queue, one-state listing falls back to GET /api/queues/{queue}/jobs. */
let legacyListing = false;

export async function fetchJobs(query: JobListQuery, signal?: AbortSignal): Promise<JobPage> {
  const params = {
    q: query.q,
    queue: query.queue,
    state: query.state && query.state.length ? query.state.join(",") : undefined,
    name: query.name,
    after: query.after,
    before: query.before,
    order: query.order,
    limit: query.limit,
    cursor: query.cursor,
  };
  try {
    if (legacyListing && !query.q) throw new ApiError(422, "INVALID_ARGUMENT", "q: required by this server", "q");
    const page = await get<JobPage>("/api/jobs", params, signal);
    return { jobs: page.jobs, next_cursor: page.next_cursor ?? null };
  } catch (err) {
    const older = err instanceof ApiError && err.status === 422 && err.field === "q" && !query.q;
    if (!older) throw err;
    legacyListing = true; // remembered: no more failing requests on every refresh
    if (query.queue && (query.state?.length ?? 0) <= 1) {
      return get<JobPage>(`/api/queues/${enc(query.queue)}/jobs`, {
        state: query.state?.[0] ?? "enqueued",
        order: query.order,
        limit: query.limit,
        cursor: query.cursor,
      }, signal);
    }
    throw new ApiError(
      422,
      "UNSUPPORTED",
      "this server lists jobs across queues only from a newer version: pick one queue and one state",
    );
  }
}

export const retryJob = (id: string) => post<Job>(`/api/jobs/${enc(id)}/retry`);
export const requeueJob = (id: string) => post<Job>(`/api/jobs/${enc(id)}/requeue`);
export const cancelJob = (id: string) => post<Job>(`/api/jobs/${enc(id)}/cancel`);
export const deleteJob = (id: string) => del<Job>(`/api/jobs/${enc(id)}`);

const ONE: Record<BulkAction, (id: string) => Promise<Job>> = {
  retry: retryJob,
  requeue: requeueJob,
  cancel: cancelJob,
  delete: deleteJob,
};

/** Apply an action to jobs by id or to every job matching a filter (POST /api/jobs:bulk). Against
 * an older server without the bulk route, ids are done one request at a time; a filter cannot be. */
export async function bulk(action: BulkAction, target: { ids: string[] } | { filter: JobFilter }): Promise<BulkResult> {
  try {
    return await post<BulkResult>("/api/jobs:bulk", { action, ...target });
  } catch (err) {
    if (!(err instanceof ApiError && (err.status === 404 || err.status === 405) && "ids" in target)) throw err;
    let done = 0;
    for (const id of target.ids) {
      try {
        await ONE[action](id);
        done += 1;
      } catch (one) {
        if (!(one instanceof ApiError) || one.status === 401) throw one;
      }
    }
    return { matched: target.ids.length, done, failed: target.ids.length - done };
  }
}

export async function fetchWorkers(signal?: AbortSignal): Promise<WorkerList> {
  const list = await get<WorkerList>("/api/workers", {}, signal);
  return { workers: list.workers, possibly_aborted: list.possibly_aborted ?? [] };
}

/** Per-minute (or coarser) counts; null when the server keeps no history yet. */
export async function fetchHistory(
  minutes: number,
  step: number,
  queue?: string,
  signal?: AbortSignal,
): Promise<StatsHistory | null> {
  try {
    return await get<StatsHistory>("/api/stats/history", { minutes, step, queue }, signal);
  } catch (err) {
    if (err instanceof ApiError && (err.status === 404 || err.status === 405)) return null;
    throw err;
  }
}

export async function fetchJobDefinitions(signal?: AbortSignal): Promise<JobDefinition[]> {
  return (await get<{ definitions: JobDefinition[] }>("/api/job-definitions", {}, signal)).definitions;
}

export async function fetchSchedules(signal?: AbortSignal): Promise<Schedule[]> {
  return (await get<{ schedules: Schedule[] }>("/api/schedules", {}, signal)).schedules;
}

export type ScheduleAction = "pause" | "resume" | "trigger";
export const scheduleAction = (name: string, action: ScheduleAction) =>
  post<unknown>(`/api/schedules/${enc(name)}/${action}`);
export const deleteSchedule = (name: string) => del<unknown>(`/api/schedules/${enc(name)}`);

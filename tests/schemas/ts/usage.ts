import { enqueueSendEmail, enqueueResizeImage, Urgency, ResizeImage_Format, type JobEnqueueOptions } from "./example.js";

const client = {
  async enqueue(queue: string, name: string, payload: unknown, options?: JobEnqueueOptions): Promise<string> {
    return `${queue}/${name}/${JSON.stringify(payload, (_k, v: unknown) => (typeof v === "bigint" ? v.toString() : v))}/${options?.priority ?? 0}`;
  },
};

export async function main(): Promise<string[]> {
  const a = await enqueueSendEmail(client, { to: "a@b.c", subject: "hi", body: "", cc: [], urgency: Urgency.URGENCY_HIGH, tags: {} });
  const b = await enqueueResizeImage(
    client,
    { source_url: "s3://x", sizes: [{ width: 1, height: 2 }], format: ResizeImage_Format.FORMAT_PNG, max_bytes: 10n, request_id: 1n,
      rotate: 0, checksum: 0, quality: 0.5, scale: 1, strip_metadata: false, watermark: new Uint8Array(), presets: new Map() },
    { priority: 9, queue: "other" },
  );
  // @ts-expect-error: `to` must be a string
  await enqueueSendEmail(client, { to: 1, subject: "", body: "", cc: [], urgency: 0, tags: {} });
  // @ts-expect-error: 64-bit ints are bigint
  await enqueueResizeImage(client, { source_url: "", sizes: [], format: 0, max_bytes: 1, request_id: 1n, rotate: 0, checksum: 0, quality: 0, scale: 0, strip_metadata: false, watermark: new Uint8Array(), presets: new Map() });
  return [a, b];
}

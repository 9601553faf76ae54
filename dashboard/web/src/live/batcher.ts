// Job events can come by the tens of thousands a second. Refetching on each would flood the server,
// so changes are gathered and flushed at most once per interval: every list and counter on screen is
// at most that much behind, at a cost that does not grow with the server's throughput.

export class ChangeBatcher {
  private ids = new Set<string>();
  private queues = new Set<string>();
  /** Some changed jobs are not named (the server left them out, or over maxIds): refresh every job. */
  private unnamed = false;
  private timer: ReturnType<typeof setTimeout> | null = null;

  constructor(
    private readonly flush: (ids: ReadonlySet<string>, queues: ReadonlySet<string>, unnamed: boolean) => void,
    private readonly intervalMs = 500,
    /** Ids remembered per flush at most (beyond, a flush refreshes lists but not each job). */
    private readonly maxIds = 1000,
  ) {}

  add(id: string, queue: string): void {
    if (this.ids.size < this.maxIds) this.ids.add(id);
    else this.unnamed = true;
    this.queues.add(queue);
    this.arm();
  }

  /** A server-side batch (`event: jobs`): its ids and queues, and whether other jobs changed too. */
  addMany(ids: readonly string[], queues: readonly string[], more: boolean): void {
    for (const id of ids) {
      if (this.ids.size < this.maxIds) this.ids.add(id);
      else this.unnamed = true;
    }
    for (const q of queues) this.queues.add(q);
    if (more) this.unnamed = true;
    this.arm();
  }

  private arm(): void {
    if (this.timer === null) this.timer = setTimeout(() => this.fire(), this.intervalMs);
  }

  private fire(): void {
    this.timer = null;
    const ids = this.ids;
    const queues = this.queues;
    const unnamed = this.unnamed;
    this.ids = new Set();
    this.queues = new Set();
    this.unnamed = false;
    this.flush(ids, queues, unnamed);
  }

  cancel(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.ids.clear();
    this.queues.clear();
    this.unnamed = false;
  }
}

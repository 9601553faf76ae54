// Jobs declared with TC39 standard decorators (TypeScript 5, no `experimentalDecorators`), compiled
// by tsc and run by test/decorators.test.mjs under Node and Bun. The SDK is imported by its package
// name (a package may import itself), so the compiled file finds it from any folder.
import { App, job, type JobContext, Permanent } from "@spitfirehq/sdk";

/** A dependency the handlers reach through `this`. */
export class Mailer {
  readonly sent: string[] = [];
}

export class Emails {
  constructor(readonly mailer: Mailer) {}

  @job("emails.send", { queue: "dec-emails", maxAttempts: 3 })
  async send(payload: { to: string }, ctx: JobContext): Promise<{ sent: string; attempt: number; by: string }> {
    if (!payload.to.includes("@")) throw new Permanent(`not an address: ${payload.to}`);
    await Promise.resolve();
    this.mailer.sent.push(payload.to);
    return { sent: payload.to, attempt: ctx.attempt, by: this.constructor.name };
  }

  @job("emails.count", { queue: "dec-emails" })
  count(): number {
    return this.mailer.sent.length;
  }

  /** Not a job: registering leaves it alone. */
  helper(): string {
    return "helper";
  }
}

/** A subclass: its jobs are the inherited ones and its own. */
export class AuditedEmails extends Emails {
  @job("emails.audit", { queue: "dec-emails" })
  audit(payload: { note: string }): string {
    return `${this.mailer.sent.length}: ${payload.note}`;
  }
}

/** Static methods: registered with the class itself. */
export class Reports {
  static built = 0;

  @job("reports.build", { queue: "dec-reports", priority: 7 })
  static build(payload: { id: bigint }): { id: bigint; built: number } {
    this.built++;
    return { id: payload.id, built: this.built };
  }
}

/** Decorating a private method fails when the class is defined, saying what to do. */
export function definePrivate(): unknown {
  try {
    class Hidden {
      @job("hidden", {})
      #run(): void {}

      use(): void {
        this.#run();
      }
    }
    return Hidden;
  } catch (err) {
    return err;
  }
}

/** The typed handle of a decorated method, from an app that only enqueues. */
export function producer(url: string) {
  const app = new App(url);
  return { app, send: app.jobFor(Emails.prototype.send) };
}

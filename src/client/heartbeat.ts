// The client's heartbeat (zproto's policy: the client pings, the server expires silent clients; never the
// other way round). Every interval, if nothing has been heard from the server for an interval, the client
// is "idle" and sends HUGZ; if nothing has been heard for the whole timeout, the server is "lost".

import { monotonic } from "../clock.js";

export interface HeartbeatOptions {
  readonly intervalMs: number;
  readonly timeoutMs: number;
  readonly now?: () => number;
}

export class Heartbeat {
  #lastHeard: number;
  #timer: NodeJS.Timeout | undefined;
  /** The silence after which the server is lost (options.timeoutMs unless `patience` said otherwise). */
  #timeoutMs: number;
  readonly #now: () => number;

  constructor(
    readonly options: HeartbeatOptions,
    private readonly onIdle: () => void,
    private readonly onLost: () => void,
  ) {
    this.#now = options.now ?? monotonic;
    this.#lastHeard = this.#now();
    this.#timeoutMs = options.timeoutMs;
  }

  /** From now on, the server is lost after `timeoutMs` of silence. */
  patience(timeoutMs: number): void {
    this.#timeoutMs = timeoutMs;
  }

  /** Something arrived from the server (or a new socket was opened): the silence starts again. */
  heard(): void {
    this.#lastHeard = this.#now();
  }

  start(): void {
    this.heard();
    this.#timer ??= setInterval(() => this.tick(), this.options.intervalMs);
    this.#timer.unref?.();
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** One beat (called by the timer; public so tests can drive it). */
  tick(): void {
    const silent = this.#now() - this.#lastHeard;
    if (silent >= this.#timeoutMs) {
      this.heard(); // the next "lost" comes a whole timeout later, not on every beat
      this.onLost();
    } else if (silent >= this.options.intervalMs - 5) {
      this.onIdle();
    }
  }
}

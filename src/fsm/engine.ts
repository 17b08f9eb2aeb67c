// A small table-driven state machine engine, after zproto's generated engines (s_client_execute).
//
// A machine is a table: state -> event -> { do: [action names], next?: state }. A "defaults" superstate
// holds behaviour shared by every state (an unexpected message -> RTFM, expiry). Actions are plain named
// functions; they steer the machine only by calling next() (handle this event after my actions) or
// raise() (skip my remaining actions, handle this event now). Nothing outside the engine switches on the
// current state. Each engine owns one event queue and runs to completion: one event (and the internal
// events its actions raise) is finished before the next queued event starts, even when actions await I/O.
// The exception is an event posted as urgent (the peer is gone): it cuts in at the next step.

import { Turns } from "./turn.js";

/** One row of a table: the actions to run, in order, and the state to move to afterwards. */
export interface Transition<S extends string, A extends string> {
  readonly do: readonly A[];
  readonly next?: S;
}

export type StateRow<S extends string, E extends string, A extends string> = {
  readonly [K in E | "*"]?: Transition<S, A>;
};

/**
 * A machine: its states, plus `defaults`, consulted when a state has no row for an event.
 * Lookup order: state[event], defaults[event], state["*"], defaults["*"]. The wildcard only matches
 * events for which `isWildcardEvent` is true (protocol messages), never internal events.
 */
export interface Table<S extends string, E extends string, A extends string> {
  readonly initial: S;
  readonly states: { readonly [K in S]: StateRow<S, E, A> };
  readonly defaults: StateRow<S, E, A>;
}

export type Actions<A extends string, Arg> = {
  readonly [K in A]: (arg: Arg) => void | Promise<void>;
};

export interface EngineOptions<S extends string, E extends string, A extends string> {
  /** Which events the "*" rows may catch (typically: every protocol message, no internal event). */
  readonly isWildcardEvent?: (event: E) => boolean;
  /** Called for every step: the state, the event, and then each action or the new state. */
  readonly trace?: (line: string) => void;
  /** An action threw: the engine stops that event's actions and reports here; it never rethrows. */
  readonly onActionError?: (error: unknown, state: S, event: E, action: A) => void;
  /**
   * The weight held changed by `delta` (posted; handled, its actions finished; dropped by stop): lets an
   * owner of many engines keep one sum across them without going through them all.
   */
  readonly onWeight?: (delta: number) => void;
}

interface Queued<E, Arg> {
  readonly event: E;
  readonly arg: Arg;
  /** What it holds, in the caller's unit (bytes of a received message): see pendingWeight. */
  readonly weight?: number;
}

export const STOPPED = "(stopped)";

export class Engine<S extends string, E extends string, A extends string, Arg = unknown> {
  #state: S | typeof STOPPED;
  readonly #queue: Queued<E, Arg>[] = [];
  #running = false;
  /** Set by next(): handled after the current event's actions, before anything queued. */
  #nextEvent: Queued<E, Arg> | undefined;
  /** Set by raise(): cuts the current event's remaining actions short. */
  #exception: Queued<E, Arg> | undefined;
  /** Posted with `urgent` (the dialogue is over): handled at the next step, before anything else. */
  #urgent: Queued<E, Arg> | undefined;
  #idle: (() => void)[] = [];
  /** Waiting for the queue to shrink below a mark (see below()). */
  #below: { readonly messages: number; readonly weight: number; readonly resolve: () => void }[] = [];

  constructor(
    readonly table: Table<S, E, A>,
    readonly actions: Actions<A, Arg>,
    readonly options: EngineOptions<S, E, A> = {},
  ) {
    this.#state = table.initial;
  }

  get state(): S | typeof STOPPED {
    return this.#state;
  }

  get stopped(): boolean {
    return this.#state === STOPPED;
  }

  /** Handling an event, or with events waiting. */
  get busy(): boolean {
    return this.#running;
  }

  /** Events waiting in the queue (not counting the one being handled). */
  get pending(): number {
    return this.#queue.length;
  }

  /**
   * The sum of the weights (posted with `weight`) of the events waiting in the queue and of the one being
   * handled: what an event holds is held until its actions finish (a subscription's plan keeps its
   * message across waits for hashes; taken off when it was dequeued, it counted for nothing meanwhile and
   * nobody was dropped for it: a review).
   */
  get pendingWeight(): number {
    return this.#queueWeight;
  }
  #queueWeight = 0;

  /**
   * Queue an event from outside (a received message, a timer, an API call). Returns whether it was taken.
   * With `coalesce`, the event is dropped if an identical event is already waiting (e.g. "dispatch").
   * With `urgent`, for events that end the dialogue (the peer hung up, went silent, sent garbage): it
   * is handled as soon as the current step ends, before the dialogue's own next step and anything
   * queued, so that a run of steps (a file sent chunk by chunk) does not go on for a peer that is gone.
   * One waits at a time: more are dropped until it has been handled (a flood of garbage is one event).
   */
  post(event: E, arg: Arg, opts: { coalesce?: boolean; urgent?: boolean; weight?: number } = {}): boolean {
    if (this.stopped) return false;
    if (opts.urgent) {
      if (this.#urgent) return false;
      this.#urgent = { event, arg };
    } else {
      if (opts.coalesce && this.#queue.some((q) => q.event === event)) return false;
      this.#queue.push(opts.weight ? { event, arg, weight: opts.weight } : { event, arg });
      if (opts.weight) this.#weigh(opts.weight);
    }
    if (!this.#running) void this.#run();
    return true;
  }

  /**
   * Fold an `event` into the latest one of its kind still waiting, instead of queueing another: `fold`
   * makes that one's argument from its own. Not past an event `isBarrier` names, queued after it (what
   * the folded event means may depend on it). Returns whether it was folded (else post it as usual).
   */
  fold(event: E, fold: (waiting: Arg) => Arg, isBarrier: (other: E) => boolean): boolean {
    if (this.stopped) return false;
    for (let i = this.#queue.length - 1; i >= 0; i--) {
      const item = this.#queue[i]!;
      if (item.event === event) {
        this.#queue[i] = { ...item, arg: fold(item.arg) };
        return true;
      }
      if (isBarrier(item.event)) return false;
    }
    return false;
  }

  /**
   * Take out of the queue every event `matches` names (what came over a connection that is gone, say):
   * the one being handled and an urgent one stay. Returns how many went.
   */
  drop(matches: (event: E) => boolean): number {
    const kept: Queued<E, Arg>[] = [];
    let dropped = 0;
    let weight = 0;
    for (const q of this.#queue) {
      if (!matches(q.event)) kept.push(q);
      else {
        dropped++;
        weight += q.weight ?? 0;
      }
    }
    this.#queue.splice(0, this.#queue.length, ...kept);
    if (weight) this.#weigh(-weight);
    return dropped;
  }

  /** Is an event `matches` names waiting in the queue (not counting the one being handled)? */
  waiting(matches: (event: E) => boolean): boolean {
    return this.#queue.some((q) => matches(q.event));
  }

  /** From an action: once this event's actions are done (and its `next` state taken), handle `event`. */
  next(event: E, arg: Arg): void {
    this.#nextEvent = { event, arg };
  }

  /** From an action: skip the remaining actions of this event and handle `event` in the current state. */
  raise(event: E, arg: Arg): void {
    this.#exception = { event, arg };
  }

  /** Stop for good: drop the queue, run nothing more. Safe to call from an action. */
  stop(): void {
    this.#state = STOPPED;
    this.#queue.length = 0;
    if (this.#queueWeight) this.#weigh(-this.#queueWeight);
    this.#nextEvent = undefined;
    this.#exception = undefined;
    this.#urgent = undefined;
  }

  /** Resolves when the queue is empty and nothing is running (for tests and orderly shutdown). */
  idle(): Promise<void> {
    if (!this.#running) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  /**
   * Resolves once fewer than `messages` events wait and they weigh less than `weight`, or nothing is
   * running: a reader that stopped at its bound reads again at a lower mark, not only once all is handled.
   */
  below(messages: number, weight: number): Promise<void> {
    if (!this.#running || this.#isBelow(messages, weight)) return Promise.resolve();
    return new Promise((resolve) => this.#below.push({ messages, weight, resolve }));
  }

  #isBelow(messages: number, weight: number): boolean {
    return this.#queue.length < messages && this.#queueWeight < weight;
  }

  #wakeBelow(): void {
    const woken = this.#below.filter((waiter) => this.#isBelow(waiter.messages, waiter.weight));
    if (woken.length === 0) return;
    this.#below = this.#below.filter((waiter) => !woken.includes(waiter));
    for (const waiter of woken) waiter.resolve();
  }

  async #run(): Promise<void> {
    this.#running = true;
    // (A long run of events lets the event loop turn now and then: see Turns.)
    const turns = new Turns();
    try {
      while (!this.stopped) {
        if (turns.due) await turns.turn();
        const urgent = this.#urgent;
        if (urgent) {
          this.#urgent = undefined;
          // Its row normally stops the engine. If it does not, the dialogue goes on where it was (unless
          // the urgent event's own actions chose what comes next).
          const resume = this.#exception ?? this.#nextEvent;
          this.#exception = undefined;
          this.#nextEvent = undefined;
          await this.#handle(urgent);
          if (resume && !this.#exception && !this.#nextEvent) this.#nextEvent = resume;
          continue;
        }
        // Internal events come first: they continue the dialogue the last event started.
        const item = this.#exception ?? this.#nextEvent ?? this.#dequeue();
        this.#exception = undefined;
        this.#nextEvent = undefined;
        if (item === undefined) break;
        await this.#handle(item);
        // (A stop meanwhile took everything off, this included.)
        if (item.weight && !this.stopped) this.#weigh(-item.weight);
        if (this.#below.length > 0) this.#wakeBelow();
      }
    } finally {
      this.#running = false;
      const waiters = this.#idle;
      this.#idle = [];
      for (const resolve of waiters) resolve();
      const below = this.#below;
      this.#below = [];
      for (const { resolve } of below) resolve();
    }
  }

  #dequeue(): Queued<E, Arg> | undefined {
    return this.#queue.shift();
  }

  #weigh(delta: number): void {
    this.#queueWeight += delta;
    this.options.onWeight?.(delta);
  }

  #lookup(state: S, event: E): Transition<S, A> | undefined {
    const row = this.table.states[state];
    const own = row[event] ?? this.table.defaults[event];
    if (own) return own;
    if (this.options.isWildcardEvent?.(event) === false) return undefined;
    return row["*"] ?? this.table.defaults["*"];
  }

  async #handle({ event, arg }: Queued<E, Arg>): Promise<void> {
    const state = this.#state;
    if (state === STOPPED) return;
    const transition = this.#lookup(state, event);
    const trace = this.options.trace;
    trace?.(`${state}: ${event}`);
    if (!transition) {
      trace?.(`    (no transition: ignored)`);
      return;
    }
    for (const action of transition.do) {
      trace?.(`    $ ${action}`);
      try {
        const result = this.actions[action](arg);
        if (result !== undefined) await result;
      } catch (error) {
        this.options.onActionError?.(error, state, event, action);
        return;
      }
      if (this.stopped) return;
      if (this.#exception) {
        // Unlike zproto's engine_set_next_event, which let the remaining actions run (the root of the
        // reference server's credit livelock), an exception really does cut the action list short.
        this.#nextEvent = undefined;
        return;
      }
    }
    if (transition.next !== undefined && !this.stopped) {
      trace?.(`    > ${transition.next}`);
      this.#state = transition.next;
    }
  }
}

/** A Mermaid state diagram of a table, for documentation. */
export function toMermaid<S extends string, E extends string, A extends string>(table: Table<S, E, A>): string {
  const lines = ["stateDiagram-v2", `    [*] --> ${table.initial}`];
  for (const [state, row] of Object.entries(table.states) as [S, StateRow<S, E, A>][]) {
    for (const [event, t] of Object.entries(row) as [string, Transition<S, A> | undefined][]) {
      if (!t) continue;
      lines.push(`    ${state} --> ${t.next ?? state}: ${event === "*" ? "any" : event}`);
    }
  }
  return lines.join("\n");
}

// The server's single writer. zeromq.js allows one send in flight per socket (a second throws EBUSY), so
// every message for every client goes through this one loop. Each client has its own queue, served in
// turn, so a client whose pipe is full (EAGAIN with ROUTER_MANDATORY and a zero send timeout) is skipped
// and retried while the others carry on: a slow client never slows the rest.

import type { Router } from "zeromq";
import { monotonic } from "../clock.js";

interface PeerQueue {
  readonly routingId: Buffer;
  /** Messages: one frame, or several complete FILEMQ messages in one ZeroMQ message (capability "batch"). */
  readonly frames: (Buffer | readonly Buffer[])[];
  /** Retry not before this time (the peer's pipe was full). */
  blockedUntil: number;
  /** When its pipe was first found full in the current stretch (0: not full). */
  fullSince: number;
  /** Wakes a producer waiting for this queue to shrink. */
  drained: (() => void)[];
}

/** Fewer than `limit` messages wait for this peer; none, while its pipe is found full (see below()). */
function hasRoom(peer: PeerQueue, limit: number): boolean {
  return peer.frames.length < (peer.fullSince > 0 ? 1 : limit);
}

/**
 * A full peer is retried every RETRY_MS: a client that reads, only slower than we send, gets its pipe
 * topped up at once (a pipe of small messages may drain in a few ms). One that has stayed full for FULL_MS has
 * stopped reading (frozen, or hostile): it is retried every SLOW_RETRY_MS, so each such peer costs 20
 * failed sends (thrown errors) a second instead of 500, however many there are.
 */
const RETRY_MS = 2;
const FULL_MS = 100;
const SLOW_RETRY_MS = 50;
/** Messages sent to one peer before turning to the next one. */
const BURST = 16;

export class Outbox {
  readonly #peers = new Map<string, PeerQueue>();
  #wake: (() => void) | undefined;
  #closed = false;
  readonly #loop: Promise<void>;

  constructor(
    private readonly socket: Router,
    /** The peer is gone (EHOSTUNREACH): its queue was dropped. */
    private readonly onUnreachable: (key: string) => void,
  ) {
    this.#loop = this.#run();
  }

  /** Queue one message for a peer: one frame, or (a batch) several frames sent as one ZeroMQ message. */
  send(key: string, routingId: Buffer, frame: Buffer | readonly Buffer[]): void {
    if (this.#closed) return;
    let peer = this.#peers.get(key);
    if (!peer) {
      peer = { routingId, frames: [], blockedUntil: 0, fullSince: 0, drained: [] };
      this.#peers.set(key, peer);
    }
    peer.frames.push(frame);
    this.#wake?.();
  }

  /** Since when this peer's pipe has been full without a break (0: it is not). */
  fullSince(key: string): number {
    return this.#peers.get(key)?.fullSince ?? 0;
  }

  /** Messages waiting for this peer. */
  queued(key: string): number {
    return this.#peers.get(key)?.frames.length ?? 0;
  }

  /**
   * Resolves once fewer than `limit` messages wait for this peer (or the peer is forgotten); while its
   * pipe is found full, once none does: a client that stops reading has libzmq's pipe full of chunks
   * already, and a queue of `limit` more behind it, in each of a crowd of such clients, was as much again
   * (a review: 40 of them, the publisher at 2.3 GB). (What was queued when the pipe was first found full
   * stays: the stalled budget counts it.) One that reads empties its pipe by half before it takes more.
   */
  below(key: string, limit: number): Promise<void> {
    const peer = this.#peers.get(key);
    // (Called for every chunk sent: nothing made on the way when there is room.)
    if (!peer || hasRoom(peer, limit)) return Promise.resolve();
    return new Promise((resolve) => {
      const check = () => {
        if (!this.#peers.has(key) || hasRoom(peer, limit)) resolve();
        else peer.drained.push(check);
      };
      peer.drained.push(check);
    });
  }

  /** Drop everything queued for a peer (it said KTHXBAI, expired, or broke the protocol). */
  forget(key: string): void {
    const peer = this.#peers.get(key);
    if (!peer) return;
    this.#peers.delete(key);
    for (const wake of peer.drained.splice(0)) wake();
  }

  async close(): Promise<void> {
    this.#closed = true;
    for (const key of [...this.#peers.keys()]) this.forget(key);
    this.#wake?.();
    await this.#loop;
  }

  async #run(): Promise<void> {
    while (!this.#closed) {
      let sent = 0;
      let soonest = Infinity;
      for (const [key, peer] of this.#peers) {
        if (peer.frames.length === 0) continue;
        const now = monotonic();
        if (peer.blockedUntil > now) {
          soonest = Math.min(soonest, peer.blockedUntil);
          continue;
        }
        for (let n = 0; n < BURST && peer.frames.length > 0 && !this.#closed; n++) {
          const outcome = await this.#sendOne(peer);
          if (outcome === "blocked") {
            const at = monotonic();
            if (peer.fullSince === 0) peer.fullSince = at;
            peer.blockedUntil = at + (at - peer.fullSince < FULL_MS ? RETRY_MS : SLOW_RETRY_MS);
            soonest = Math.min(soonest, peer.blockedUntil);
            break;
          }
          if (outcome === "gone") {
            this.forget(key);
            this.onUnreachable(key);
            break;
          }
          peer.fullSince = 0;
          sent++;
        }
        if (peer.frames.length === 0) this.#idle(key, peer);
        else for (const wake of peer.drained.splice(0)) wake();
      }
      if (sent > 0) continue;
      let timer: NodeJS.Timeout | undefined;
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
        if (soonest !== Infinity) timer = setTimeout(resolve, Math.max(0, soonest - monotonic()));
      });
      // (Woken early: the retry timer goes, not left to hold the process up to 50 ms after close.)
      clearTimeout(timer);
      this.#wake = undefined;
    }
  }

  #idle(key: string, peer: PeerQueue): void {
    for (const wake of peer.drained.splice(0)) wake();
    // Keep the map small: an empty queue is recreated on the next send.
    if (peer.frames.length === 0 && peer.drained.length === 0) this.#peers.delete(key);
  }

  async #sendOne(peer: PeerQueue): Promise<"sent" | "blocked" | "gone"> {
    const frame = peer.frames[0]!;
    try {
      await this.socket.send(Buffer.isBuffer(frame) ? [peer.routingId, frame] : [peer.routingId, ...frame]);
      peer.frames.shift();
      return "sent";
    } catch (error) {
      const code = (error as { code?: string }).code;
      if (code === "EAGAIN") return "blocked";
      if (code === "EHOSTUNREACH") return "gone";
      if (this.socket.closed) {
        this.#closed = true;
        return "gone";
      }
      // Anything else is unexpected for one peer; drop that message rather than wedge the loop.
      peer.frames.shift();
      return "sent";
    }
  }
}

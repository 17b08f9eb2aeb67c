// The server's dialogue with one client (one routing id), as a table. Read it top to bottom; the actions
// are in connection.ts under the same names. Transcribed from zeromq/filemq's fmq_server.xml, with the
// reference's defects fixed (see ../../README.md#how-it-works):
//  - an exception really cuts an action list short, so a client short of credit goes back to "ready"
//    instead of re-sending a stale chunk forever (the credit livelock), and a chunk larger than the credit
//    is split rather than held back;
//  - OHAI in any state starts a fresh session (subscriptions, credit and queue are reset);
//  - ICANHAZ is accepted whenever the client is ready, as often as it likes, and sends the files already
//    published under the path (the late joiner), answered SRSLY if the path is invalid or matches no mount;
//  - a malformed message gets RTFM for that client only; nothing stops the server.

import type { Table } from "../fsm/engine.js";
import type { MessageName } from "../protocol/messages.js";

export type ServerState = "start" | "ready" | "dispatching" | "caught up";

export type ServerEvent =
  | MessageName
  /** A mount reported files for this client (coalesced: one pending at a time). */
  | "dispatch"
  /** Raised by "check for client data": a chunk or a delete can go now. */
  | "send chunk"
  /** Raised by "send next chunk": data is due but the client has granted no credit. */
  | "no credit"
  /** Raised by "send next chunk": the next step waits for a fingerprint still being computed. */
  | "not ready"
  /** Raised by "check for client data": nothing is queued for this client. */
  | "finished"
  /** The client said nothing for the expiry period. */
  | "expired"
  /** The client sent bytes that do not decode. */
  | "malformed"
  /**
   * An empty message: libzmq's notice that the connection closed (ROUTER_NOTIFY; the peer hung up, or
   * stopped answering heartbeats), or a peer sending an empty message, which looks the same.
   */
  | "hung up"
  /** Raised by "store subscription": the path is invalid, matches no mount, or the client may not read it. */
  | "refused"
  /** More changed files wait for this client than we keep for one (it reads too slowly, or grants no credit). */
  | "too far behind";

export type ServerAction =
  | "start session"
  | "send OHAI-OK"
  | "store subscription"
  | "send ICANHAZ-OK"
  | "queue files already published"
  | "store credit"
  | "check for client data"
  | "send next chunk"
  | "report caught up"
  | "send HUGZ-OK"
  | "send SRSLY"
  | "send RTFM"
  | "terminate";

export const serverMachine: Table<ServerState, ServerEvent, ServerAction> = {
  initial: "start",
  states: {
    // A new routing id: the first thing it says must be OHAI.
    start: {
      OHAI: { do: ["start session", "send OHAI-OK"], next: "ready" },
    },
    // Between messages: waiting for the client (credit, subscriptions) or for a mount (files).
    ready: {
      OHAI: { do: ["start session", "send OHAI-OK"], next: "ready" },
      ICANHAZ: { do: ["store subscription", "send ICANHAZ-OK", "queue files already published", "check for client data"], next: "dispatching" },
      NOM: { do: ["store credit", "check for client data"], next: "dispatching" },
      dispatch: { do: ["check for client data"], next: "dispatching" },
      HUGZ: { do: ["send HUGZ-OK"] },
      KTHXBAI: { do: ["terminate"] },
    },
    // Sending: one chunk per step, until the client's credit or queue runs out. Messages from the
    // client wait in its queue meanwhile (run to completion), except what ends the dialogue (hung up,
    // expired, malformed: posted as urgent, they cut in at the next step).
    dispatching: {
      "send chunk": { do: ["send next chunk", "check for client data"] },
      "no credit": { do: [], next: "ready" },
      // What the next step needs is being computed elsewhere (a fingerprint, in the worker): wait in
      // "ready", where the client's messages are answered; "dispatch" is posted once it is there.
      "not ready": { do: [], next: "ready" },
      finished: { do: ["report caught up"], next: "caught up" },
      dispatch: { do: [] },
    },
    // As "ready", with everything sent and said so: more credit alone finds nothing to send and is only
    // stored (no second report); a mount's files (dispatch) or a new subscription wake it.
    "caught up": {
      OHAI: { do: ["start session", "send OHAI-OK"], next: "ready" },
      ICANHAZ: { do: ["store subscription", "send ICANHAZ-OK", "queue files already published", "check for client data"], next: "dispatching" },
      NOM: { do: ["store credit"] },
      dispatch: { do: ["check for client data"], next: "dispatching" },
      HUGZ: { do: ["send HUGZ-OK"] },
      KTHXBAI: { do: ["terminate"] },
    },
  },
  defaults: {
    // 35/FILEMQ: a refused subscription is answered SRSLY; the peering stays open.
    refused: { do: ["send SRSLY"], next: "ready" },
    expired: { do: ["terminate"] },
    malformed: { do: ["send RTFM", "terminate"] },
    // Its queue of changes is at its bound: the session ends, and our client subscribes again with what
    // it holds (a cache the server plans from, at a pointer per file), rather than we keep an entry per
    // changed file for as long as it lags.
    "too far behind": { do: ["send RTFM", "terminate"] },
    // A gone peer's RTFM fails quietly (EHOSTUNREACH); a live one that sent an empty message reads it.
    "hung up": { do: ["send RTFM", "terminate"] },
    // Any other message, in any state: the client is confused; tell it and forget it.
    "*": { do: ["send RTFM", "terminate"] },
  },
};

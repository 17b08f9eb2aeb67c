// The client's dialogue with its server, as a table. Read it top to bottom; the actions are in client.ts
// under the same names. Transcribed from zeromq/filemq's fmq_client.xml, with the reference's defects
// fixed (see ../../README.md#how-it-works):
//  - the client never stops for good: RTFM (the server forgot us, or restarted), a silent server, or a
//    server that never answers OHAI all lead back to "connecting" on a fresh socket, and every
//    subscription is replayed once the new session is open;
//  - subscribe is accepted in every state, as often as the caller likes (the reference hung on a second one);
//  - credit is counted for every chunk received, wanted or not, so client and server never disagree.
// Client.close() is not an event here: it must not wait behind the messages queued for the machine. It
// takes the same "leave the session" step when connected, then stops the machine.

import type { Table } from "../fsm/engine.js";
import type { MessageName } from "../protocol/messages.js";

export type ClientState = "start" | "connecting" | "connected";

export type ClientEvent =
  | MessageName
  /** API: start talking to the server. */
  | "connect"
  /** API: subscribe to a path (also replayed from the list when a session opens). */
  | "subscribe"
  /** The heartbeat timer: nothing heard from the server for one heartbeat interval. */
  | "expired"
  /** The heartbeat timer: nothing heard for the whole timeout. */
  | "server lost"
  /** The server sent bytes that do not decode. */
  | "malformed"
  /** ...and they claimed to be chunks: the credit they spent (see cheezburgerBytes). */
  | "unreadable chunk";

export type ClientAction =
  | "open socket and send OHAI"
  | "start session"
  | "send every subscription"
  | "store subscription"
  | "send ICANHAZ"
  | "confirm subscription"
  | "refuse subscription"
  | "grant credit"
  | "say how far it has read"
  | "process the chunk"
  | "send HUGZ"
  | "report disconnection"
  | "leave the session"
  | "report protocol error"
  | "count what it spent";

export const clientMachine: Table<ClientState, ClientEvent, ClientAction> = {
  initial: "start",
  states: {
    start: {
      connect: { do: ["open socket and send OHAI"], next: "connecting" },
      subscribe: { do: ["store subscription"] },
    },
    // OHAI is on its way (queued by the socket until the TCP connection exists).
    connecting: {
      OHAI_OK: { do: ["start session", "send every subscription"], next: "connected" },
      subscribe: { do: ["store subscription"] },
      // No answer yet: the server may simply not be up. Keep the OHAI queued; give up on this socket
      // only after the whole timeout.
      expired: { do: [] },
      // Chunks of the session just left, read from its socket before we gave it up (a subscriber frozen
      // and thawed had a queue of them): nothing to do, the new session asks for what is missing.
      CHEEZBURGER: { do: [] },
    },
    connected: {
      subscribe: { do: ["store subscription", "send ICANHAZ"] },
      ICANHAZ_OK: { do: ["confirm subscription", "grant credit"] },
      SRSLY: { do: ["refuse subscription"] },
      // (With no credit to grant, a NOM of none now and then: the server sees we are reading.)
      CHEEZBURGER: { do: ["process the chunk", "grant credit", "say how far it has read"] },
      // A chunk we could not read (a name that is not UTF-8, from a server that sends names as bytes)
      // still spent our credit: counted, or enough of them would close the window for good.
      "unreadable chunk": { do: ["count what it spent", "grant credit"] },
      // Idle for a heartbeat interval: HUGZ, so the server answers and does not expire us. (While the
      // machine is busy with a long step, the heartbeat sends HUGZ itself: see the Client's constructor.)
      expired: { do: ["send HUGZ"] },
      // Silent for the whole timeout: leave the session with a word before starting again. A server
      // that is alive but slow (or whose replies were lost) would otherwise go on sending to a socket
      // nobody reads until a send failed or it expired us.
      "server lost": { do: ["report disconnection", "leave the session", "open socket and send OHAI"], next: "connecting" },
    },
  },
  defaults: {
    HUGZ_OK: { do: [] },
    // The server does not know us (it restarted, or expired us) or we confused it: start again.
    RTFM: { do: ["report disconnection", "open socket and send OHAI"], next: "connecting" },
    "server lost": { do: ["report disconnection", "open socket and send OHAI"], next: "connecting" },
    malformed: { do: ["report protocol error"] },
    // (Outside a session: nothing was granted to it.)
    "unreadable chunk": { do: [] },
    // A message that makes no sense now: say so, carry on (nothing was written for it).
    "*": { do: ["report protocol error"] },
  },
};

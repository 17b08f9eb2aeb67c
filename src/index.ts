// fmq: FileMQ (35/FILEMQ v2) over ZeroMQ. The public API.

export { Server, ServerError, serverDefaults, type ServerOptions, type ServerEvents, type SentEvent } from "./server/server.js";
export { Client, ClientError, clientDefaults, type ClientOptions, type ClientEvents, type DeliveredEvent, type DeletedEvent, type ClientProgress } from "./client/client.js";
export { Mount, MountError, type PublishedFile } from "./mount/mount.js";
export { InboxError } from "./client/inbox.js";
export { encode, decode, decodeFrames } from "./protocol/codec.js";
export { DecodeError, EncodeError } from "./protocol/errors.js";
export * from "./protocol/messages.js";

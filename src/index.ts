// fmq: FileMQ (35/FILEMQ v2) over ZeroMQ. The public API.

export { Server, ServerError, serverDefaults, type ServerOptions, type ServerEvents, type SentEvent } from "./server/server.js";
export { Client, ClientError, SubscriptionRefused, clientDefaults, type ClientOptions, type ClientEvents, type DeliveredEvent, type DeletedEvent, type ClientProgress } from "./client/client.js";
export { Mount, MountError, type PublishedFile } from "./mount/mount.js";
export { InboxError } from "./client/inbox.js";
export { encode, decode, decodeFrames } from "./protocol/codec.js";
export { DecodeError, EncodeError } from "./protocol/errors.js";
export * from "./protocol/messages.js";
export { z85Encode, z85Decode, Z85Error } from "./security/z85.js";
export { generateKeyPair, publicKeyOf, readPublicKey, readPublicKeys, readAllowList, readSecretKeyFile, writeKeyFiles, KeyError, type KeyPair } from "./security/keys.js";
export { hashPassword, type AccessPolicy, type Account, type Mechanism } from "./security/policy.js";
export type { ServerSecurityOptions } from "./security/server-security.js";
export type { ClientSecurity } from "./security/client-socket.js";
export { loadServerConfig, parseServerConfig, resolveServerSettings, ConfigError, type ServerConfig, type ServerSettings } from "./config/server-config.js";

// What libzmq would take but should not: it reads a TCP port with atoi and keeps the low 16 bits, so
// tcp://host:99999 binds or connects to port 34463 without a word.

/**
 * Why `endpoint` is unusable to bind or to connect to, though libzmq would accept it, or undefined. Any
 * free port (*, !, 0) is for binding: to connect, it is nowhere, and libzmq would try it for ever.
 */
export function endpointProblem(endpoint: string, use: "bind" | "connect"): string | undefined {
  const tcp = /^tcp:\/\/.*:([^:\]]*)$/.exec(endpoint);
  if (!tcp) return undefined;
  const port = tcp[1]!;
  const anyPort = port === "*" || port === "!" || /^0+$/.test(port);
  if (anyPort) return use === "connect" ? `port ${port} is nowhere to connect to` : undefined;
  if (!/^\d+$/.test(port) || Number(port) > 65535) return `port ${port} is not a TCP port (0-65535)`;
  return undefined;
}

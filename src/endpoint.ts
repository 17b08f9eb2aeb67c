// What libzmq would take but should not: it reads a TCP port with atoi and keeps the low 16 bits, so
// tcp://host:99999 binds or connects to port 34463 without a word.

/** Why `endpoint` is unusable though libzmq would accept it, or undefined. */
export function endpointProblem(endpoint: string): string | undefined {
  const tcp = /^tcp:\/\/.*:([^:\]]*)$/.exec(endpoint);
  if (!tcp) return undefined;
  const port = tcp[1]!;
  if (port === "*" || port === "!") return undefined; // any free port (bind)
  if (!/^\d+$/.test(port) || Number(port) > 65535) return `port ${port} is not a TCP port (0-65535)`;
  return undefined;
}
